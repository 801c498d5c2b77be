# Two entry points: `make demo` (set up, then run the pipeline on the bundled demo data, offline)
# and `make test` (set up, then run the test suite). Everything lives in a project virtualenv.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

export DVC_NO_ANALYTICS := 1
export DVC_NO_UPDATER := 1

.PHONY: setup demo test lint bench clean-demo

setup: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[dev,ray]"
	touch $(STAMP)

# dvc runs each stage's `python -m …` through PATH: the project venv must come first.
demo: setup
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/dvc repro
	@echo "dataset: data/celebref   report: reports/benchmark.md"

test: setup
	$(BIN)/python -m pytest

lint: setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

bench: setup
	$(BIN)/python -m benchmark.bench_curation

clean-demo:
	rm -rf data models results metrics reports
