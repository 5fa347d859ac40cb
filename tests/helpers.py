"""Helpers shared by the tests (fixtures live in conftest.py; test modules import from here only)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch

from tests.command_server import command_path

REPO = Path(__file__).resolve().parents[1]
PARAMS = REPO / "params.yaml"
# oneDNN restricted to its AVX2 kernels, as on CPUs without AVX-512 (where channels-last crashed: issue 30)
AVX2 = {"ONEDNN_MAX_CPU_ISA": "AVX2"}
BIN = str(Path(sys.executable).parent)


def data_source() -> Path | None:
    """The offline dataset copies (``$FASTADV_DATA_SOURCE`` or ``../shared/data``), None where absent."""
    for cand in (os.environ.get("FASTADV_DATA_SOURCE"), REPO.parent / "shared" / "data"):
        if cand and Path(cand).is_dir() and (Path(cand) / "cifar10.npz").is_file():
            return Path(cand)
    return None


def toy_model(seed: int = 0, in_dim: int = 12, hidden: int = 16, classes: int = 3, dtype=torch.float64):
    """A small smooth (tanh) MLP on images of shape (3, 2, 2): second derivatives are non-zero."""
    torch.manual_seed(seed)
    m = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(in_dim, hidden), torch.nn.Tanh(),
                            torch.nn.Linear(hidden, classes))
    return m.to(dtype)


# The separable task: a class-0 image is grey, at a level drawn from DARK ± JITTER, a class-1 image at
# BRIGHT ± JITTER, each pixel ± NOISE more (of 255). The classes are 2·(BRIGHT − DARK)/2 − JITTER − NOISE
# apart at the least, so a model that fits the training set separates them; an L∞ ball of radius
# SEPARABLE_FLIP_EPS/255 around an image holds images of the other class (every pixel shifted by the gap).
SEPARABLE_DARK, SEPARABLE_BRIGHT, SEPARABLE_JITTER, SEPARABLE_NOISE = 100, 156, 20, 4
SEPARABLE_FLIP_EPS = SEPARABLE_BRIGHT - SEPARABLE_DARK


def write_separable_dataset(root: str | Path, n_train: int = 512, n_test: int = 128, seed: int = 0,
                            dataset: str = "svhn") -> Path:
    """Write ``<root>/<dataset>.npz`` holding the separable two-class task in the layout of a
    32×32 RGB dataset whose arrays are checked structurally only (SVHN), so the training,
    evaluation and workflow code paths run unchanged without the real datasets."""
    rng = np.random.default_rng(seed)
    arrays = {}
    for split, n in (("train", n_train), ("test", n_test)):
        y = rng.integers(0, 2, n)
        level = np.where(y == 1, SEPARABLE_BRIGHT, SEPARABLE_DARK) + rng.integers(-SEPARABLE_JITTER, SEPARABLE_JITTER + 1, n)
        x = level[:, None, None, None] + rng.integers(-SEPARABLE_NOISE, SEPARABLE_NOISE + 1, (n, 32, 32, 3))
        arrays[f"x_{split}"], arrays[f"y_{split}"] = x.astype(np.uint8), y.astype(np.uint8)
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    np.savez(root / f"{dataset}.npz", **arrays)
    return root / f"{dataset}.npz"


def copy_workflow(dst: Path) -> Path:
    """The workflow files (Snakefile, params.yaml, workflow/) in ``dst``, to run Snakemake there."""
    for name in ("Snakefile", "params.yaml"):
        shutil.copy(REPO / name, dst / name)
    shutil.copytree(REPO / "workflow", dst / "workflow")
    return dst


# The smoke figures most workflow tests read: built once per `make test` (tests/conftest.py: smoke_build).
SMOKE_TARGETS = ["results/smoke/fig1.pdf", "results/smoke/fig1_curves_eps16.pdf", "results/smoke/figA.pdf",
                 "results/smoke/grad_alignment.pdf", "results/smoke/runtime.md", "results/smoke/autoattack.md",
                 "results/smoke/attacks_table.md",
                 "results/smoke/fig1/curves.csv"]


def copy_build(build: Path, dst: Path) -> Path:
    """A copy of a built workflow folder (its files' times and Snakemake's records kept), for a test to change."""
    shutil.copytree(build, dst, symlinks=True)
    return dst


def snakemake(cwd, *args, check=True, env=None):
    """Run this venv's Snakemake in ``cwd``, it and ``fastadv`` forks of one process that imported them and torch
    (tests/command_server.py), with the offline data as source and ``env`` added to the environment."""
    full = {**os.environ, "PATH": command_path()}
    src = data_source()
    if src is not None:
        full["FASTADV_DATA_SOURCE"] = str(src)
    full.update(env or {})
    r = subprocess.run(["snakemake", *args], cwd=cwd, env=full, capture_output=True, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}")
    return r


def separable_threshold_model(scale: float = 40.0) -> torch.nn.Module:
    """A single-layer CNN that solves the separable task by construction: one filter averages each 3×3×3
    patch, the linear layer thresholds the mean of that map half way between the two classes' grey
    levels (logit 1 − logit 0 = 2·scale·(mean − threshold)), and the other classes are never predicted.
    Its clean accuracy is 1; an L∞ attack flips a point when ε exceeds (about) its grey level's distance
    to the threshold, so at ε = 16/255 only the points within 16 grey levels of it."""
    from fastadv.models import build_model

    model = build_model("one_layer_cnn", width=1, num_classes=10, in_shape=(3, 32, 32))
    # Share of a 3×3 patch inside the zero-padded 32×32 image, averaged over pixels: (30·3 + 2·2)² / (9·32²).
    inside = (30 * 3 + 2 * 2) ** 2 / (9 * 32 * 32)
    threshold = inside * (SEPARABLE_DARK + SEPARABLE_BRIGHT) / 2 / 255
    with torch.no_grad():
        model.conv.weight.fill_(1 / 27)
        model.conv.bias.zero_()
        lin = model.net[4]
        lin.weight.zero_()
        lin.bias.fill_(-1e3)
        lin.weight[1].fill_(scale / 1024)
        lin.weight[0].fill_(-scale / 1024)
        lin.bias[0], lin.bias[1] = scale * threshold, -scale * threshold
    return model.eval()


def save_separable_threshold_model(path, data_root) -> dict:
    """:func:`separable_threshold_model` as a model file of a run on the separable task in ``data_root``;
    returns the run config it records."""
    from fastadv.training.checkpoint import save_model
    from fastadv.config.params import deep_merge
    from fastadv.config.study import resolve_config

    cfg = deep_merge(resolve_config(PARAMS, "train", "smoke"), {
        "data": {"root": str(data_root), "dataset": "svhn", "subset": None},
        "model": {"name": "one_layer_cnn", "width": 1}, "method": {"name": "standard"}})
    save_model(path, separable_threshold_model(), cfg, "final", 0)
    return cfg


def dry_run_jobs(wf, *targets) -> dict:
    """Job counts per rule from the dry run's "Job stats" table ({} when nothing is to be done)."""
    r = snakemake(wf, "-n", "--cores", "2", *targets)
    counts, in_table = {}, False
    for line in r.stdout.splitlines():
        parts = line.split()
        if line.startswith("Job stats:"):
            in_table = True
        elif in_table and parts and parts[0] == "total":
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


CIFAR10_CLASSES = ("airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck")


def write_cifar_image_tree(dst: str | Path, cifar_npz: str | Path, train_per_class: int = 24, val_per_class: int = 8,
                           seed: int = 0) -> Path:
    """A small ImageNet-layout tree (``train/<class>/``, ``val/<class>/``) of real images: the first CIFAR-10
    images of each class, enlarged (bicubic) to a random 64-96 × 64-96 px each and JPEG-encoded under ImageNet-like
    names, so that crops, resized copies and the test transforms meet varied sizes and aspect ratios."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    with np.load(cifar_npz) as z:
        arrays = {k: z[k] for k in ("x_train", "y_train", "x_test", "y_test")}
    for split, key, per_class in (("train", "train", train_per_class), ("val", "test", val_per_class)):
        x, y = arrays[f"x_{key}"], arrays[f"y_{key}"]
        for label, name in enumerate(CIFAR10_CLASSES):
            folder = Path(dst) / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for j, i in enumerate(np.flatnonzero(y == label)[:per_class]):
                w, h = (int(v) for v in rng.integers(64, 97, size=2))
                Image.fromarray(x[i]).resize((w, h), Image.BICUBIC).save(folder / f"{name}_{j:04d}.JPEG", "JPEG")
    return Path(dst)
