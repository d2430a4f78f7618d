# Two commands for a fresh machine: `make demo` and `make test` (each sets up .venv first).
PYTHON ?= python3
VENV ?= .venv
BIN := $(abspath $(VENV))/bin
SETUP := $(VENV)/.installed
# the package's CLI (`adfm`) must be on PATH for the rules' shell commands
RUN := PATH="$(BIN):$$PATH"
PROFILE := --workflow-profile workflow/profiles/default
DEMO := --configfile config.yaml workflow/configs/demo.yaml

.PHONY: setup demo test dry-run clean-demo

setup: $(SETUP)

$(SETUP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet -e '.[test]'
	touch $@

demo: $(SETUP)
	$(RUN) snakemake $(PROFILE) --cores all $(DEMO)

test: $(SETUP)
	$(RUN) pytest

dry-run: $(SETUP)
	$(RUN) snakemake $(PROFILE) -n --cores all

clean-demo:
	rm -rf resources/demo resources/datasets resources/manifests resources/boxes resources/splits \
		resources/models/tiny-qwen2.5-vl resources/adapters results/predictions results/metrics \
		results/table*.csv results/table*.md logs benchmarks
