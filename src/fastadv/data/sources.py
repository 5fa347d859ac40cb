"""The datasets' arrays read from where they come from: a ready ``.npz`` (e.g. the offline copies in
``../shared/data``), the official files (CIFAR-10 ``cifar-10-python.tar.gz``, Krizhevsky 2009; MNIST's idx files,
LeCun et al.; SVHN's ``{train,test}_32x32.mat``, Netzer et al. 2011) or torchvision's downloaders. Reading only:
``fastadv.data.datasets.prepare`` verifies what is read (published hashes) before writing anything."""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import tarfile
import zipfile
from pathlib import Path

import numpy as np

from fastadv.errors import FastAdvError

# MD5 of the official SVHN cropped-digits files (as torchvision checks them).
SVHN_MAT_MD5 = {"train": "e26dedcc434d2e4c54c9b2d4a06d8373", "test": "eb5a983be6a315427106f1b164d9cef3"}
CIFAR10_ARCHIVE = "cifar-10-python.tar.gz"
MNIST_FILES = {
    "x_train": "train-images-idx3-ubyte", "y_train": "train-labels-idx1-ubyte",
    "x_test": "t10k-images-idx3-ubyte", "y_test": "t10k-labels-idx1-ubyte",
}

def file_digest(path: Path, algorithm: str = "sha256") -> str:
    """Hex digest of a file's bytes, read in 1 MiB chunks."""
    h = hashlib.new(algorithm)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _md5(path: Path) -> str:
    return file_digest(path, "md5")


def read_npz(path: Path, mmap: bool = False) -> dict:
    """The arrays of an ``.npz`` file; ``mmap``: its uncompressed members (np.savez's, so every prepared file's)
    memory-mapped read-only instead of read: a run that uses 512 of CIFAR-10's 50,000 training images then reads
    only those, after one pass over the file's pages for its hash (a copy of the 184 MB was ~0.5 s of every
    training and evaluation process)."""
    try:
        if mmap:
            with zipfile.ZipFile(path) as z:
                members = z.infolist()
            if all(m.compress_type == zipfile.ZIP_STORED for m in members):
                return {m.filename.removesuffix(".npy"): _mapped_member(path, m) for m in members}
        with np.load(path, allow_pickle=False) as z:
            return {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, ValueError, EOFError, OSError) as e:
        raise FastAdvError(f"data file {str(path)!r} is corrupt or truncated ({type(e).__name__}: {e})") from None


def _mapped_member(path: Path, member: zipfile.ZipInfo) -> np.ndarray:
    """A stored ``.npy`` member of a zip file as a read-only memory map: its data start after the member's local
    header (30 bytes, then its name and extra field, whose lengths are the header's last two fields) and the
    ``.npy`` header (format version, shape, dtype)."""
    with open(path, "rb") as f:
        f.seek(member.header_offset)
        local = f.read(30)
        if len(local) != 30 or local[:4] != b"PK\x03\x04":
            raise ValueError(f"member {member.filename}: no local file header")
        f.seek(member.header_offset + 30 + int.from_bytes(local[26:28], "little") + int.from_bytes(local[28:30], "little"))
        version = np.lib.format.read_magic(f)
        read_header = {(1, 0): np.lib.format.read_array_header_1_0,
                       (2, 0): np.lib.format.read_array_header_2_0}.get(version)
        if read_header is None:
            raise ValueError(f"member {member.filename}: .npy format {version} is not read")
        shape, fortran, dtype = read_header(f)
        if dtype.hasobject:
            raise ValueError(f"member {member.filename}: object arrays are not read")
        return np.memmap(f, dtype=dtype, mode="r", offset=f.tell(), shape=shape, order="F" if fortran else "C")


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
    """Arrays of ``dataset`` (a name already checked) from ``source`` (a file, a folder holding official files or
    ``<dataset>.npz``, or 'download')."""
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
