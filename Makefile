# socialcorpus: `make demo` builds the corpus from the bundled sample; `make test` runs every test.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
DEMO ?= demo
STAMP := $(VENV)/.installed

.PHONY: install demo test test-fast ui bench ablation lint clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	# torch is pinned in the `train` extra (2.13.0, a CPU wheel): an unpinned torch pulls a CUDA build.
	$(PY) -m pip install -q -e '.[spark,train,dev]'
	touch $(STAMP)

install: $(STAMP)

# The demo materialises into .dagster_home, the instance `make ui` serves (dagster_project/instance.py).
demo: $(STAMP)
	$(PY) -m pipelines.demo --dir $(DEMO)

test: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider

test-fast: $(STAMP)
	$(PY) -m pytest -q -p no:cacheprovider -m "not spark and not browser and not slow"

ui: $(STAMP)
	$(PY) -m dagster_project.ui --config $(DEMO)/dumps/corpus.toml

bench: $(STAMP)
	$(PY) -m benchmarks.run

ablation: $(STAMP)
	$(PY) -m benchmarks.bench_ablation

lint: $(STAMP)
	$(PY) -m ruff check .

clean:
	rm -rf $(DEMO) .dagster_home build *.egg-info
