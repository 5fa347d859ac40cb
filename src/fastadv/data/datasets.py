"""Datasets: prepare a verified canonical ``.npz``, load it as device tensors, augment on batches.

Canonical prepared form (one file per dataset, ``<root>/<dataset>.npz``):
``x_train``/``x_test`` uint8 NHWC (MNIST: NHW), ``y_train``/``y_test`` uint8,
in the datasets' original order. ``prepare`` produces it from any of

* a ready ``.npz`` holding those arrays (e.g. the offline copies in ``../shared/data``),
* the official files: CIFAR-10 ``cifar-10-python.tar.gz`` (Krizhevsky 2009),
  MNIST's idx files (LeCun et al.), SVHN's ``{train,test}_32x32.mat`` (Netzer et al. 2011),
* ``download``: torchvision's downloaders (needs internet),

(read by ``fastadv.data.sources``) and verifies content: for CIFAR-10 and MNIST the SHA-256 of every array's raw
bytes must equal the published hash, so every route provably yields the same
data. SVHN has no array hashes; its official ``.mat`` files are checked by MD5
(torchvision's values) instead.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastadv import atomic
from fastadv.data import image_folder
from fastadv.data.sources import read_npz, read_source
from fastadv.data.registry import FOLDER_DATASETS, dataset_spec
from fastadv.errors import FastAdvError, unknown_choice
from fastadv.data.subset import subset_indices  # noqa: F401 (public here too)
from fastadv.shard import shard_bounds

# SHA-256 of each array's C-contiguous bytes (hashlib.sha256(a.tobytes())).
ARRAY_SHA256 = {
    "cifar10": {
        "x_train": "47af8b02cfcfb6cdf3dbbd1969ad7f1b70f4413f6f80f437b020ee4e5bc8304a",
        "y_train": "2b7cd2f24487317614016b72ffd53071c3062f592f0eb300c18a770d41ae1253",
        "x_test": "f9b1e2130bab680db56eb06d886f7f1ad0f1183907ceff4659d1735c890f5b04",
        "y_test": "cec8a24a1e92aa2ecaa0bbd3dbfa86bf6cd8759fbd209a832824c8cf0afca9d5",
    },
    "mnist": {
        "x_train": "741c988805d008ac6e4c904b69001ba184c24b2c540a4ef403f4c71b676cf757",
        "y_train": "1feba77c54802fa5339a11837ea4b2866434b83314ec45192930f1df69120c13",
        "x_test": "6d87418db22cc8025d05968bec9bd5c3932904b23485740db143a061a2c9d161",
        "y_test": "ddeff807876a9661a1110d45c266c86239a3a1b7d37da0c3716a7a683c852ff5",
    },
}
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a)).hexdigest()  # hashes the buffer itself: no copy of the bytes


def verify_arrays(dataset: str, arrays: dict, origin: str) -> None:
    """Raise unless ``arrays`` are exactly the published dataset (shapes, dtypes, hashes)."""
    dataset_spec(dataset)
    missing = [k for k in ARRAYS if k not in arrays]
    if missing:
        raise FastAdvError(f"{origin}: missing array(s) {', '.join(missing)}; expected {', '.join(ARRAYS)}")
    for k in ARRAYS:
        if arrays[k].dtype != np.uint8:
            raise FastAdvError(f"{origin}: array {k} has dtype {arrays[k].dtype}, expected uint8")
    for k, want in ARRAY_SHA256.get(dataset, {}).items():
        got = sha256(arrays[k])
        if got != want:
            raise FastAdvError(f"{origin}: array {k} does not match {dataset} (sha256 {got[:12]}… != {want[:12]}…)")
    if dataset not in ARRAY_SHA256:  # SVHN: structural checks only (see module docstring)
        h, w = dataset_spec(dataset).shape[1:]
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            if x.ndim != 4 or x.shape[1:] != (h, w, 3) or len(y) != len(x) or y.max(initial=0) > 9:
                raise FastAdvError(f"{origin}: arrays x_{split}/y_{split} are not SVHN-shaped (N,{h},{w},3) with labels 0-9")


SHARED_DATA = Path("..") / "shared" / "data"  # the offline copies beside the project (relative to its root)


def default_source() -> str:
    """The source ``fastadv prepare`` uses without ``--source`` (hence ``make demo``, Snakemake and ``dvc repro``,
    which call it from the project root): ``$FASTADV_DATA_SOURCE``, else ``../shared/data`` (absolute) when it
    holds ``cifar10.npz``, else ``'download'``. Declared here only: the Makefile sets no source of its own."""
    env = os.environ.get("FASTADV_DATA_SOURCE")
    if env:
        return env
    return os.path.abspath(SHARED_DATA) if (SHARED_DATA / "cifar10.npz").is_file() else "download"


def prepared_path(root: str | Path, dataset: str) -> Path:
    return Path(root) / f"{dataset}.npz"


def prepare(dataset: str, source: str, root: str | Path) -> Path:
    """Write the verified canonical ``<root>/<dataset>.npz`` from ``source`` (atomically); for an
    image-folder dataset, its manifest ``<root>/<dataset>.json`` (see image_folder.py)."""
    if dataset in FOLDER_DATASETS:
        if source == "download":
            raise FastAdvError(f"{dataset} cannot be downloaded automatically (licence); "
                               "pass --source with an ImageFolder directory (train/ and val/)")
        return image_folder.prepare(source, root, dataset)
    dataset_spec(dataset)
    arrays, origin = read_source(dataset, source, Path(root) / "raw")
    verify_arrays(dataset, arrays, origin)
    out = prepared_path(root, dataset)

    def write(tmp: Path):
        with open(tmp, "wb") as f:
            np.savez(f, **{k: arrays[k] for k in ARRAYS})

    atomic.write_with(out, write)
    return out


def load_arrays(root: str | Path, dataset: str) -> dict | None:
    """The prepared arrays, re-verified (a corrupted prepared file is an error, not a silent result);
    None for an image-folder dataset (read per batch by :func:`load_split`)."""
    if dataset in FOLDER_DATASETS:
        return None
    path = prepared_path(root, dataset)
    if not path.is_file():
        raise FastAdvError(f"prepared data {str(path)!r} not found; run: fastadv prepare --dataset {dataset} --source ...")
    arrays = read_npz(path, mmap=True)
    verify_arrays(dataset, arrays, str(path))
    return arrays


def to_tensor(x: np.ndarray) -> torch.Tensor:
    """uint8 NHWC/NHW numpy → uint8 NCHW torch (kept uint8 until a batch is used)."""
    t = torch.from_numpy(np.ascontiguousarray(x))
    return t.unsqueeze(1) if t.ndim == 3 else t.permute(0, 3, 1, 2).contiguous()


def random_crop(x: torch.Tensor, pad: int, gen: torch.Generator) -> torch.Tensor:
    """Per-example random crop after ``pad`` pixels of zero padding, on a whole batch."""
    n, c, h, w = x.shape
    padded = F.pad(x, (pad, pad, pad, pad))
    di = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    dj = torch.randint(0, 2 * pad + 1, (n,), generator=gen, device=gen.device).to(x.device)
    rows = (di[:, None] + torch.arange(h, device=x.device))[:, None, :, None]
    cols = (dj[:, None] + torch.arange(w, device=x.device))[:, None, None, :]
    return padded[torch.arange(n, device=x.device)[:, None, None, None],
                  torch.arange(c, device=x.device)[None, :, None, None], rows, cols]


def random_flip(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Horizontal flip of a random half (p=0.5 per example) of a batch."""
    flip = torch.rand(x.shape[0], generator=gen, device=gen.device).to(x.device) < 0.5
    return torch.where(flip[:, None, None, None], x.flip(3), x)


class DeviceDataset:
    """A whole split as uint8 tensors on the training device; batches are made with tensor ops."""

    def __init__(self, x: torch.Tensor, y: torch.Tensor, device: torch.device, augmentations: tuple = ()):
        self.x = x.to(device)
        self.y = y.long().to(device)
        self.augmentations = augmentations
        self.device = device
        self.generator_device = device  # augmentation is drawn where the batch is

    def __len__(self) -> int:
        return len(self.y)

    def batch(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float [0,1] batch for indices ``idx``; augmented when ``gen`` is given."""
        x = self.x[idx].float().div_(255)
        if gen is not None:
            if "crop" in self.augmentations:
                x = random_crop(x, 4, gen)
            if "flip" in self.augmentations:
                x = random_flip(x, gen)
        return x, self.y[idx]

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The first ``n`` examples, unaugmented (fixed monitoring / evaluation points)."""
        return self.batch(torch.arange(min(n, len(self)), device=self.device))

    def iterate(self, batches, shard=(0, 1)):
        """(x, y, (offset, size of the global batch)) per (indices, generator) of ``batches``, this rank's shard
        (``shard``: rank, world) of the augmented global batch (augmentation is drawn for the whole batch)."""
        for idx, gen in batches:
            x, y = self.batch(idx, gen)
            off, n = shard_bounds(len(y), *shard)
            yield x[off:off + n], y[off:off + n], (off, len(y))


def load_cifar10(n: int | None = None, split: str = "test", root: str | Path = "data",
                 device: str | torch.device = "cpu") -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (None: all) images of a CIFAR-10 split as float NCHW in [0,1] and int64 labels,
    from the prepared, hash-verified ``<root>/cifar10.npz`` (``fastadv prepare --dataset cifar10``)."""
    if split not in ("train", "test"):
        raise unknown_choice("split", split, ("train", "test"))
    data = load_split(root, "cifar10", split, device)
    return data.head(len(data) if n is None else n)


def load_dataset(name: str, n: int | None = None, split: str = "test", root: str | Path = "data",
                 device: str | torch.device = "cpu", eval_crop: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The first ``n`` (None: all) images of a split of a prepared dataset — cifar10, svhn, mnist (the
    verified ``<root>/<name>.npz``) or an image folder (imagenet: its checked manifest; images decoded now) —
    as float NCHW in [0,1] and int64 labels. Prepare it first: ``fastadv prepare --dataset NAME``."""
    dataset_spec(name)
    if split not in ("train", "test"):
        raise unknown_choice("split", split, ("train", "test"))
    data = load_split(root, name, split, device, crop=eval_crop)
    return data.head(len(data) if n is None else n)


def load_split(root, dataset: str, split: str, device, subset=None, subset_mode="first", seed=0,
               augment: bool = False, arrays: dict | None = None, images: int | None = None,
               crop: int | None = None, workers: int = 0):
    """A split as a :class:`DeviceDataset` (or, for an image-folder dataset, an
    :class:`image_folder.FolderDataset` with the same interface; ``images``, ``crop``, ``workers``: see there)."""
    if dataset in FOLDER_DATASETS:
        return image_folder.load_split(root, dataset, split, device, subset, subset_mode, seed, augment, images,
                                       crop, workers)
    arrays = load_arrays(root, dataset) if arrays is None else arrays
    x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
    idx = subset_indices(len(y), subset, subset_mode, seed).numpy()  # taken first: the rest is never read
    return DeviceDataset(to_tensor(x[idx]), torch.from_numpy(y[idx].astype(np.int64)), torch.device(device),
                         dataset_spec(dataset).augmentations if augment else ())
