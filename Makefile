# Two commands for a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
SETUP := $(VENV)/.installed
# the package's CLI (`adfm`) must be on PATH for the rules' shell commands
RUN := PATH="$(BIN):$$PATH"
PROFILE := --workflow-profile workflow/profiles/default
DEMO := --configfile config.yaml workflow/configs/demo.yaml

.PHONY: setup demo test lint dry-run clean-demo

setup: $(SETUP)

$(SETUP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	# byte-compiled at install (pip's default), not lazily: with PYTHONDONTWRITEBYTECODE set, as on our
	# CI machines, every job would recompile its imports (measured: make demo 391 s -> 488 s without)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(SETUP)
	$(RUN) snakemake $(PROFILE) --cores all $(DEMO)

test: $(SETUP)
	$(RUN) pytest

# What CI checks before the tests: lint findings, then formatting (Python by ruff, rule files by snakefmt);
# settings in pyproject.toml. `ruff format` / `snakefmt` without --check apply the formatting.
LINTED := src tests bench workflow
lint: $(SETUP)
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)
	$(BIN)/snakefmt --check Snakefile workflow

# The demo DAG through SLURM with the slurm profile (tests/cluster/): on a one-node cluster started
# here (root, Debian: workflow/cluster/slurm-single-node.sh), or on the cluster `sinfo` already
# reaches. The daemons it started are stopped again, whether the test passes or not.
CLUSTER := workflow/cluster/slurm-single-node.sh
.PHONY: test-cluster
test-cluster: $(SETUP)
	$(BIN)/pip install --quiet -e '.[test,cluster]'
	$(CLUSTER) start && ADFM_CLUSTER_TEST=1 $(RUN) pytest -raP --basetemp=/tmp/adfm-test-cluster tests/cluster; \
		status=$$?; $(CLUSTER) stop; exit $$status

dry-run: $(SETUP)
	$(RUN) snakemake $(PROFILE) -n --cores all

# envs/*.yaml's pip sections resolve with pip (dry run; needs the package index, not conda)
.PHONY: check-envs
check-envs: $(SETUP)
	$(BIN)/python tests/envs/resolve_envs.py

clean-demo:
	rm -rf resources/demo resources/datasets resources/manifests resources/boxes resources/splits \
		resources/models/tiny-* resources/adapters results/predictions results/metrics \
		results/table*.csv results/table*.md logs benchmarks
