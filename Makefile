# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Data source: `fastadv prepare`'s default (datasets.default_source, also what `dvc repro` gets):
# $FASTADV_DATA_SOURCE (environment or `make demo FASTADV_DATA_SOURCE=...`), else ../shared/data if it
# holds cifar10.npz, else a torchvision download.

.PHONY: setup test test-fast demo sweep smoke pull clean gpu-check docs report readme-figures docs/demo_fig1.png docs/sweep.png

$(BIN)/fastadv: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/fastadv

# Two pytest-xdist workers, one a core (tests/conftest.py: which tests share a worker; the longest start first).
# The 25 slowest tests are printed, and every test's time kept for benchmarks/test_budget.py (.ci/run prints it).
TEST_WORKERS ?= 2
test: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) --durations=25 --junitxml=.pytest_cache/junit.xml

test-fast: setup
	$(BIN)/python -m pytest -n $(TEST_WORKERS) -m "not slow"

SNAKEMAKE := PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2

# Quick-scale CPU demo: the paper's Fig. 1 at a scale a 2-core CPU can train.
demo: setup
	$(BIN)/fastadv estimate demo
	$(SNAKEMAKE) results/fig1.pdf results/fig1_curves_eps16.pdf results/fig1_curves_eps20.pdf --config scale=quick

# Fig. 1's shape over seeds at the quick scale: the onset of catastrophic overfitting per method (~1.6 h on 2 cores).
sweep: setup
	$(BIN)/fastadv estimate sweep
	$(SNAKEMAKE) results/quick/sweep.pdf

# The documentation site into site/ (open site/index.html); strict: a warning (a broken link, a page left out of
# the nav) fails it. The reference pages are generated from the code as it builds (docs/hooks.py).
docs: setup
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict

# An HTML report of what the workflow built at the configured scale (`make report SCALE=quick` after the demo):
# every figure and table with its caption and config, by experiment (results/<scale>/report.html).
report: setup
	$(BIN)/fastadv report --scale $(SCALE)

# The README's pictures, redrawn from the quick scale's results: each builds what is missing first (the demo's
# Fig. 1: ~30 min on 2 cores; the sweep: ~1.5-2.5 h), then copies the PNG the figure rule drew (atomically).
readme-figures: docs/demo_fig1.png docs/sweep.png

docs/demo_fig1.png: setup
	$(SNAKEMAKE) results/quick/fig1.pdf --config scale=quick
	$(BIN)/fastadv copy results/quick/fig1.png $@

docs/sweep.png: setup
	$(SNAKEMAKE) results/quick/sweep.pdf --config scale=quick
	$(BIN)/fastadv copy results/quick/sweep.png $@

# Whole pipeline on a tiny scale (minutes): data -> training -> evaluation -> figure.
smoke: setup
	$(SNAKEMAKE) results/smoke/fig1.pdf results/smoke/fig1_curves_eps16.pdf results/smoke/figA.pdf results/smoke/grad_alignment.pdf results/smoke/runtime.md results/smoke/autoattack.md results/smoke/attacks_table.md results/smoke/fig4.pdf results/smoke/cnn4.md results/smoke/cnn4_fig11.pdf results/smoke/table7.md results/smoke/vs_published.md

# Trained checkpoints, metrics and figures of the configured scale (params.yaml `scale:`) from the
# DVC remote, no retraining; --touch then records them as up to date for Snakemake (in DAG order).
SCALE := $(shell sed -n 's/^scale: *\([A-Za-z0-9_-]*\).*/\1/p' params.yaml)
pull: setup
	$(BIN)/dvc pull --with-deps figures
	$(SNAKEMAKE) --touch results/$(SCALE)/fig1.pdf

# On a machine with a GPU: precision, speed and one-epoch checks at the paper scale (docs/guide/performance.md).
gpu-check: setup
	$(SNAKEMAKE) data/cifar10.npz
	$(BIN)/fastadv gpu-check --out results/gpu_check

clean:
	rm -rf runs results logs .snakemake site
	find benchmarks -mindepth 1 -maxdepth 1 -type d -exec rm -rf {} +  # the rules' timings; the scripts stay
