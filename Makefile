# Two entry points (see README): `make demo` and `make test`. Both set up .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Offline copy of the datasets beside the project, if present; otherwise torchvision downloads.
FASTADV_DATA_SOURCE ?= $(if $(wildcard ../shared/data/cifar10.npz),$(abspath ../shared/data),download)
export FASTADV_DATA_SOURCE

.PHONY: setup test test-fast demo smoke clean

$(BIN)/fastadv: pyproject.toml requirements.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -r requirements.lock
	$(BIN)/pip install -q --no-deps -e .
	touch $@

setup: $(BIN)/fastadv

test: setup
	$(BIN)/python -m pytest

test-fast: setup
	$(BIN)/python -m pytest -m "not slow"

data/cifar10.npz: $(BIN)/fastadv
	$(BIN)/fastadv prepare --dataset cifar10

# Quick-scale CPU demo (until the workflow lands: one FGSM and one GradAlign run at the quick scale).
demo: data/cifar10.npz
	$(BIN)/fastadv train --scale quick --set method.name=fgsm --set method.eps=16 --out runs/quick/cifar10/fgsm/eps16/seed0
	$(BIN)/fastadv train --scale quick --set method.name=gradalign --set method.eps=16 --out runs/quick/cifar10/gradalign/eps16/seed0

clean:
	rm -rf runs results logs benchmarks/*.tsv .snakemake
