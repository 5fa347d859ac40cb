"""Datasets: prepare a verified canonical ``.npz``, load it as device tensors, augment on batches.

Canonical prepared form (one file per dataset, ``<root>/<dataset>.npz``):
``x_train``/``x_test`` uint8 NHWC (MNIST: NHW), ``y_train``/``y_test`` uint8,
in the datasets' original order. ``prepare`` produces it from any of

* a ready ``.npz`` holding those arrays (e.g. the offline copies in ``../shared/data``),
* the official files: CIFAR-10 ``cifar-10-python.tar.gz`` (Krizhevsky 2009),
  MNIST's idx files (LeCun et al.), SVHN's ``{train,test}_32x32.mat`` (Netzer et al. 2011),
* ``download``: torchvision's downloaders (needs internet),

and verifies content: for CIFAR-10 and MNIST the SHA-256 of every array's raw
bytes must equal the published hash, so every route provably yields the same
data. SVHN has no array hashes; its official ``.mat`` files are checked by MD5
(torchvision's values) instead.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import os
import pickle
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from fastadv import atomic
from fastadv.data import image_folder
from fastadv.config.params import FOLDER_DATASETS
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
# MD5 of the official SVHN cropped-digits files (as torchvision checks them).
SVHN_MAT_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}
ARRAYS = ("x_train", "y_train", "x_test", "y_test")


@dataclass(frozen=True)
class DatasetInfo:
    shape: tuple          # C, H, W of one image
    num_classes: int
    augmentations: tuple  # applied on training batches when data.augment is true
    mean: tuple           # per-channel train mean, for models with normalize=true
    std: tuple


INFO = {
    # Crop (4-px zero padding) + flip for CIFAR-10, crop only for SVHN, none for
    # MNIST: the augmentations of the GradAlign code (data.py).
    "cifar10": DatasetInfo((3, 32, 32), 10, ("crop", "flip"), (0.4914, 0.4822, 0.4465), (0.2470, 0.2435, 0.2616)),
    "svhn": DatasetInfo((3, 32, 32), 10, ("crop",), (0.4377, 0.4438, 0.4728), (0.1980, 0.2010, 0.1970)),
    "mnist": DatasetInfo((1, 28, 28), 10, (), (0.1307,), (0.3081,)),
    # ImageFolder tree (image_folder.py): random-resized crop + flip, the torchvision ImageNet statistics.
    "imagenet": DatasetInfo((3, 224, 224), 1000, ("resized_crop", "flip"), (0.485, 0.456, 0.406),
                            (0.229, 0.224, 0.225)),
}


def info(dataset: str) -> DatasetInfo:
    if dataset not in INFO:
        raise unknown_choice("dataset", dataset, INFO)
    return INFO[dataset]


def sha256(a: np.ndarray) -> str:
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _md5(path: Path) -> str:
    return file_digest(path, "md5")


def verify_arrays(dataset: str, arrays: dict, origin: str) -> None:
    """Raise unless ``arrays`` are exactly the published dataset (shapes, dtypes, hashes)."""
    info(dataset)
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
        h, w = info(dataset).shape[1:]
        for split in ("train", "test"):
            x, y = arrays[f"x_{split}"], arrays[f"y_{split}"]
            if x.ndim != 4 or x.shape[1:] != (h, w, 3) or len(y) != len(x) or y.max(initial=0) > 9:
                raise FastAdvError(f"{origin}: arrays x_{split}/y_{split} are not SVHN-shaped (N,{h},{w},3) with labels 0-9")


def read_npz(path: Path) -> dict:
    try:
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise FastAdvError(f"data file {str(path)!r} is corrupt or truncated ({type(e).__name__}: {e})") from None


class _ArrayOnlyUnpickler(pickle.Unpickler):
    """Unpickler for CIFAR-10's batch files: only what numpy arrays need, nothing that runs code."""

    _ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
        ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.multiarray", "scalar"),
        ("numpy._core.multiarray", "scalar"), ("_codecs", "encode"),
    }

    def find_class(self, module, name):
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise FastAdvError(f"refusing to unpickle {module}.{name}: not part of a CIFAR-10 batch file")


def _cifar_batch(raw: bytes) -> tuple[np.ndarray, np.ndarray]:
    d = _ArrayOnlyUnpickler(io.BytesIO(raw), encoding="bytes").load()
    x = np.asarray(d[b"data"], dtype=np.uint8).reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1)
    return np.ascontiguousarray(x), np.asarray(d[b"labels"], dtype=np.uint8)


def read_cifar10_archive(path: Path) -> dict:
    """Arrays from the official ``cifar-10-python.tar.gz`` (pickled batches, read safely)."""
    try:
        with tarfile.open(path, "r:gz") as tar:
            files = {Path(m.name).name: m for m in tar.getmembers() if m.isfile()}
            need = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
            missing = [n for n in need if n not in files]
            if missing:
                raise FastAdvError(f"{path}: not a CIFAR-10 python archive (missing {', '.join(missing)})")
            batches = {n: _cifar_batch(tar.extractfile(files[n]).read()) for n in need}
    except (tarfile.TarError, EOFError, OSError, pickle.UnpicklingError, KeyError) as e:
        raise FastAdvError(f"{path}: corrupt or truncated CIFAR-10 archive ({type(e).__name__}: {e})") from None
    train = [batches[f"data_batch_{i}"] for i in range(1, 6)]
    return {
        "x_train": np.concatenate([b[0] for b in train]), "y_train": np.concatenate([b[1] for b in train]),
        "x_test": batches["test_batch"][0], "y_test": batches["test_batch"][1],
    }


def _read_idx(path: Path) -> np.ndarray:
    raw = gzip.decompress(path.read_bytes()) if path.suffix == ".gz" else path.read_bytes()
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] != 0x08:
        raise FastAdvError(f"{path}: not an unsigned-byte idx file")
    ndim = raw[3]
    dims = [int.from_bytes(raw[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim)]
    data = np.frombuffer(raw, dtype=np.uint8, offset=4 + 4 * ndim)
    if data.size != int(np.prod(dims)):
        raise FastAdvError(f"{path}: truncated idx file ({data.size} bytes for shape {dims})")
    return data.reshape(dims)


def read_mnist_idx(folder: Path) -> dict:
    out = {}
    for key, stem in MNIST_FILES.items():
        cands = [folder / stem, folder / f"{stem}.gz", folder / "MNIST" / "raw" / stem]
        found = next((c for c in cands if c.is_file()), None)
        if found is None:
            raise FastAdvError(f"{folder}: MNIST file {stem}(.gz) not found")
        out[key] = _read_idx(found)
    return out


def read_svhn_mat(folder: Path, check_md5: bool = True) -> dict:
    """SVHN's official ``.mat`` layout: X (32,32,3,N) uint8, y (N,1) with label 10 meaning digit 0."""
    from scipy.io import loadmat

    out = {}
    for split in ("train", "test"):
        path = folder / f"{split}_32x32.mat"
        if not path.is_file():
            raise FastAdvError(f"{folder}: SVHN file {path.name} not found")
        if check_md5 and _md5(path) != SVHN_MAT_MD5[split]:
            raise FastAdvError(f"{path}: MD5 {_md5(path)} != official {SVHN_MAT_MD5[split]}")
        try:
            m = loadmat(path)
        except Exception as e:  # scipy raises several types for bad files
            raise FastAdvError(f"{path}: unreadable .mat file ({type(e).__name__}: {e})") from None
        out[f"x_{split}"] = np.ascontiguousarray(m["X"].transpose(3, 0, 1, 2)).astype(np.uint8)
        y = m["y"].reshape(-1).astype(np.int64)
        out[f"y_{split}"] = np.where(y == 10, 0, y).astype(np.uint8)
    return out


def download(dataset: str, raw_dir: Path) -> dict:
    """Fetch with torchvision (internet needed); arrays are then verified like any source."""
    import torchvision.datasets as tvd

    raw_dir.mkdir(parents=True, exist_ok=True)
    try:
        if dataset == "cifar10":
            tr, te = (tvd.CIFAR10(raw_dir, train=t, download=True) for t in (True, False))
            return {"x_train": tr.data, "y_train": np.array(tr.targets, np.uint8),
                    "x_test": te.data, "y_test": np.array(te.targets, np.uint8)}
        if dataset == "mnist":
            tr, te = (tvd.MNIST(raw_dir, train=t, download=True) for t in (True, False))
            return {"x_train": tr.data.numpy(), "y_train": tr.targets.numpy().astype(np.uint8),
                    "x_test": te.data.numpy(), "y_test": te.targets.numpy().astype(np.uint8)}
        for split in ("train", "test"):
            tvd.SVHN(raw_dir, split=split, download=True)
        return read_svhn_mat(raw_dir)
    except (OSError, RuntimeError) as e:  # urllib errors are OSErrors
        raise FastAdvError(f"download of {dataset} failed ({type(e).__name__}: {e}); "
                           "pass --source with a local .npz or the official files instead") from None


def read_source(dataset: str, source: str, raw_dir: Path) -> tuple[dict, str]:
    """Arrays from ``source`` (a file, a folder holding official files or ``<dataset>.npz``, or 'download')."""
    info(dataset)
    if source == "download":
        return download(dataset, raw_dir), "download"
    p = Path(source)
    if p.is_dir():
        for cand in (p / f"{dataset}.npz", p / CIFAR10_ARCHIVE if dataset == "cifar10" else None):
            if cand is not None and cand.is_file():
                p = cand
                break
        else:
            if dataset == "mnist":
                return read_mnist_idx(p), str(p)
            if dataset == "svhn":
                return read_svhn_mat(p), str(p)
            raise FastAdvError(f"data source {source!r} holds neither {dataset}.npz nor {CIFAR10_ARCHIVE}")
    if not p.is_file():
        raise FastAdvError(f"data source {source!r} not found (expected a file, a folder or 'download')")
    if p.suffix == ".npz":
        return read_npz(p), str(p)
    if dataset == "cifar10" and p.name.endswith((".tar.gz", ".tgz")):
        return read_cifar10_archive(p), str(p)
    raise FastAdvError(f"data source {str(p)!r} is not a known {dataset} format (.npz"
                       + (", cifar-10-python.tar.gz" if dataset == "cifar10" else "") + ")")


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
    arrays = read_npz(path)
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
    if name not in INFO:
        raise unknown_choice("dataset", name, INFO)
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
    x, y = to_tensor(arrays[f"x_{split}"]), torch.from_numpy(arrays[f"y_{split}"].astype(np.int64))
    idx = subset_indices(len(y), subset, subset_mode, seed)
    return DeviceDataset(x[idx], y[idx], torch.device(device), info(dataset).augmentations if augment else ())
