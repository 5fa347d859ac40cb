"""Shared fixtures. Training, evaluation and workflow tests run on a small synthetic task in SVHN's
layout (tests/helpers.py: write_separable_dataset), so they run anywhere. Real data comes from the
offline copies in ../shared/data (or $FASTADV_DATA_SOURCE); the tests that need it (dataset
preparation and hashes, real-data pipelines) are skipped, with the reason shown, where absent."""
from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
import torch
from filelock import FileLock
from xdist.scheduler import LoadScopeScheduling

from fastadv.config.params import deep_merge
from fastadv.config.study import resolve_train_config
from fastadv.data.datasets import prepare
from tests.helpers import PARAMS, SMOKE_TARGETS, copy_workflow, data_source, snakemake, write_separable_dataset
from tests.isolation import pytest_pyfunc_call  # noqa: F401  (@pytest.mark.isolated)


@pytest.fixture(scope="session")
def source() -> Path:
    src = data_source()
    if src is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    return src


@pytest.fixture(scope="session")
def data_root(tmp_path_factory, source) -> Path:
    """Prepared (verified) CIFAR-10 and MNIST, once per test session."""
    root = tmp_path_factory.mktemp("data")
    prepare("cifar10", str(source), root)
    prepare("mnist", str(source), root)
    return root


@pytest.fixture(scope="session")
def synthetic_root(tmp_path_factory) -> Path:
    """The separable synthetic task as a prepared ``svhn.npz`` (512 training, 128 test images)."""
    root = tmp_path_factory.mktemp("synthetic")
    write_separable_dataset(root)
    return root


@pytest.fixture
def synthetic_sets(synthetic_root) -> list[str]:
    """``--set`` overrides that point a run at the synthetic task."""
    return [f"data.root={synthetic_root}", "data.dataset=svhn"]


@pytest.fixture
def tiny_cfg(synthetic_root) -> dict:
    """The smoke scale made tinier still, on the synthetic task: 64 images, one 64-image batch per epoch."""
    cfg = resolve_train_config(PARAMS, "smoke")
    return deep_merge(cfg, {
        "data": {"root": str(synthetic_root), "dataset": "svhn", "subset": 64},
        "model": {"width": 4},
        "optim": {"batch_size": 64, "epochs": 1},
        "monitor": {"test_points": 32, "train_points": 32, "pgd_steps": 2},
        "runtime": {"threads": 1, "progress": "never", "device": "cpu"},
    })


@pytest.fixture(scope="session")
def smoke_build(tmp_path_factory) -> Path:
    """A workflow folder in which plain Snakemake built SMOKE_TARGETS (the smoke Fig. 1 and five more figures and
    tables), once per test session, also across pytest-xdist workers: the first worker to ask builds it, under a
    file lock the other waits on. Read it, or change a copy (tests.helpers.copy_build)."""
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    base = tmp_path_factory.getbasetemp()
    shared = base.parent if os.environ.get("PYTEST_XDIST_WORKER") else base  # popen-gw<N>/.. is the session's
    wf, done = shared / "smoke_build", shared / "smoke_build.done"
    with FileLock(shared / "smoke_build.lock"):
        if not done.exists():
            shutil.rmtree(wf, ignore_errors=True)  # a build that failed in another worker is redone, not trusted
            wf.mkdir()
            copy_workflow(wf)
            snakemake(wf, "--cores", "2", *SMOKE_TARGETS)
            done.touch()
    return wf


# `make test` runs two workers on two cores: one thread each, also in the processes a test starts (a run whose
# runtime.threads is 0 takes torch's default, every core). Two OpenMP threads sharing a core with the other worker
# wait on each other at every operator: a PGD step of the smoke ImageNet ResNet-50 took 4.2x its time alone, 2.4x
# its one-thread time (docs/performance.md, 2026-12-07). A run's own runtime.threads still sets its count. All six
# variables Snakemake sets for a job (to its threads: snakemake/shell.py), so a one-thread job's environment is the
# tests' own and its `fastadv` can be a fork of the command server (tests/command_server.py).
for _var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS", "GOTO_NUM_THREADS", "VECLIB_MAXIMUM_THREADS",
             "NUMEXPR_NUM_THREADS"):
    os.environ[_var] = "1"


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


# `make test` runs the suite on two pytest-xdist workers (-n 2). Each test is a unit of work of its own, except in
# the modules below: their module-scoped fixture is costly (a trained run, a built clone, a wheel, the image tree,
# the two-rank runs of one torchrun launch)
# or they hold a machine-wide resource (the SLURM cluster's /etc/slurm symlink), so each runs whole on one worker.
# (xdist's own --dist loadgroup marks no group under pytest 9: it renames items through an attribute pytest 9
# no longer reads, so the units are made here.)
ONE_WORKER = {"test_slurm", "test_dvc", "test_faults", "test_readme_commands", "test_packaging", "test_evaluate",
              "test_bad_input", "test_imagenet_recipe", "test_distributed"}


class ModulesKeptTogether(LoadScopeScheduling):
    """xdist's scheduler with a unit of work per test, or per module for the ONE_WORKER modules."""

    def _split_scope(self, nodeid: str) -> str:
        module = nodeid.split("::", 1)[0]
        return module if Path(module).stem in ONE_WORKER else nodeid


def pytest_xdist_make_scheduler(config, log):
    config.option.loadscopereorder = False  # units start in collection order (below: the longest first)
    return ModulesKeptTogether(config, log)


def pytest_collection_modifyitems(session, config, items):
    """Modules start in this order: the SLURM tests, then modules with slow tests, then the rest (the longest units
    first leave the shortest for the end, when one worker may already be idle); each keeps its own order."""
    slurm = {i.module for i in items if i.get_closest_marker("slurm")}
    slow = {i.module for i in items if i.get_closest_marker("slow")}
    for item in items:  # in the JUnit report, for benchmarks/test_budget.py (no collection of its own)
        if item.get_closest_marker("slow"):
            item.user_properties.append(("marker", "slow"))
    items.sort(key=lambda i: 0 if i.module in slurm else 1 if i.module in slow else 2)  # stable
