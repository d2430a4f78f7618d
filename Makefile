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

# Installed by uv, which pip installs into .venv first (.venv/bin/pip stays for `make check-envs`):
# a fresh clone's set-up took 39-79 s instead of pip's 108-151 s (2 shared cores, cold caches), same files.
# uv reads no pip configuration (`pip config list`), so the local wheel sources pip is configured with
# on our machines are named here, where they exist. pip takes the best version and wheel of all sources;
# uv (unsafe-best-match) the best version, from PyPI too as pip does (nvidia-nvjitlink), but the wheels
# of the first index that lists it: /opt/pypi-more goes first, as /opt/pypi holds other wheels of the
# same versions of multiprocess, opencv-python-headless and tensorboard-data-server.
UV_SOURCES := $(if $(wildcard /opt/wheels),--find-links /opt/wheels) \
	$(foreach index,/opt/pypi-more/simple /opt/pypi/simple,$(if $(wildcard $(index)),--extra-index-url file://$(index))) \
	$(if $(wildcard /etc/xdg/pip/constraints.txt),--constraint /etc/xdg/pip/constraints.txt)
# byte-compiled at install (uv does not by default), not lazily: with PYTHONDONTWRITEBYTECODE set, as on
# our CI machines, every job would recompile its imports (measured: make demo 391 s -> 488 s without)
UV_INSTALL := $(BIN)/uv pip install --quiet --python $(BIN)/python --compile-bytecode \
	--index-strategy unsafe-best-match $(UV_SOURCES)

# the Makefile too: a changed set-up recipe (pip -> uv) reinstalls an existing .venv
$(SETUP): pyproject.toml Makefile
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet uv==0.13.9
	$(UV_INSTALL) -e '.[test]'
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
	$(UV_INSTALL) -e '.[test,cluster]'
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
