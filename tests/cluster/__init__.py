"""SLURM cluster tests: collected only with ADFM_CLUSTER_TEST=1 (make test-cluster); see conftest.py."""
