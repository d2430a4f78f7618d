"""The cluster tests submit the whole demo DAG to SLURM: they need a cluster, take about ten minutes,
and run only under `make test-cluster` (which starts one and sets ADFM_CLUSTER_TEST=1), never under
plain `pytest` or `make test`."""

import os

collect_ignore_glob = [] if os.environ.get("ADFM_CLUSTER_TEST") == "1" else ["test_*.py"]
