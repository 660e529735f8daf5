# The two commands: `make run` (set up, then run the example pipelines) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test bench clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a looser requirement with no torch installed pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev,cpu,postgres]'
	touch $(STAMP)

setup: $(STAMP)

run: setup
	$(BIN)/python examples/make_data.py
	$(BIN)/trainpipe run examples/breast_cancer/pipeline.yaml
	$(BIN)/trainpipe run examples/churn/pipeline.yaml
	$(BIN)/trainpipe runs list --limit 5

test: setup
	$(BIN)/python -m pytest

bench: setup
	$(BIN)/python benchmarks/bench_skeleton.py

clean:
	rm -rf .trainpipe examples/*/*.parquet examples/*/*.csv
