"""Shared fixtures. Training, evaluation and workflow tests run on a small synthetic task in SVHN's
layout (tests/helpers.py: write_separable_dataset), so they run anywhere. Real data comes from the
offline copies in ../shared/data (or $FASTADV_DATA_SOURCE); the tests that need it (dataset
preparation and hashes, real-data pipelines) are skipped, with the reason shown, where absent."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

from fastadv.config.params import deep_merge
from fastadv.config.study import resolve_train_config
from fastadv.data.datasets import prepare
from tests.helpers import PARAMS, data_source, write_separable_dataset
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


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield
