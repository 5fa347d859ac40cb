"""Data preparation: every route yields the verified arrays; corruption is refused; batch augmentation."""
import gzip
import io
import pickle
import tarfile

import numpy as np
import pytest
import scipy.io
import torch

from fastadv.data import datasets as data, sources
from fastadv.data.registry import dataset_spec
from fastadv.errors import FastAdvError


def cifar_archive(path, arrays, n_train_per_batch=None, n_test=None, extra_member=None):
    """Write a tar.gz in the official CIFAR-10 python layout (pickled dicts of bytes keys)."""
    with tarfile.open(path, "w:gz", compresslevel=1) as tar:
        def add(name, x, y):
            d = {b"batch_label": name.encode(), b"labels": [int(v) for v in y],
                 b"data": np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(len(x), -1),
                 b"filenames": [b"f"] * len(x)}
            raw = pickle.dumps(d, protocol=2) if extra_member is None or name != "test_batch" else extra_member
            info = tarfile.TarInfo(f"cifar-10-batches-py/{name}")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
        per = n_train_per_batch or len(arrays["x_train"]) // 5
        for i in range(5):
            sl = slice(i * (len(arrays["x_train"]) // 5), i * (len(arrays["x_train"]) // 5) + per)
            add(f"data_batch_{i + 1}", arrays["x_train"][sl], arrays["y_train"][sl])
        nt = n_test or len(arrays["x_test"])
        add("test_batch", arrays["x_test"][:nt], arrays["y_test"][:nt])


@pytest.fixture(scope="module")
def cifar(source):
    return sources.read_npz(source / "cifar10.npz")


def test_known_facts_of_the_offline_copy(cifar):
    assert cifar["y_test"][:10].tolist() == [3, 8, 8, 0, 6, 6, 1, 6, 3, 1]
    assert cifar["y_train"][:10].tolist() == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]
    mean = cifar["x_train"].reshape(-1, 3).mean(0) / 255
    assert np.allclose(mean, dataset_spec("cifar10").mean, atol=1e-4)


def test_small_archive_reads_back_exactly(tmp_path, cifar):
    path = tmp_path / "small.tar.gz"
    cifar_archive(path, cifar, n_train_per_batch=7, n_test=5)
    got = sources.read_cifar10_archive(path)
    want_x = np.concatenate([cifar["x_train"][i * 10000: i * 10000 + 7] for i in range(5)])
    assert np.array_equal(got["x_train"], want_x)
    assert np.array_equal(got["y_test"], cifar["y_test"][:5])
    assert got["x_train"].dtype == np.uint8 and got["x_train"].shape == (35, 32, 32, 3)


@pytest.mark.slow
def test_full_archive_and_npz_routes_give_identical_verified_arrays(tmp_path, cifar, source):
    archive = tmp_path / sources.CIFAR10_ARCHIVE
    cifar_archive(archive, cifar)
    a = data.prepare("cifar10", str(archive), tmp_path / "a")
    b = data.prepare("cifar10", str(source), tmp_path / "b")
    ra, rb = sources.read_npz(a), sources.read_npz(b)
    assert all(np.array_equal(ra[k], rb[k]) for k in data.ARRAYS)


def test_archive_with_code_running_pickle_is_refused(tmp_path, cifar):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    path = tmp_path / "evil.tar.gz"
    cifar_archive(path, cifar, n_train_per_batch=2, n_test=2, extra_member=pickle.dumps({b"x": Evil()}))
    with pytest.raises(FastAdvError, match="refusing to unpickle builtins.print"):
        sources.read_cifar10_archive(path)


def test_mnist_idx_route_verifies(tmp_path, source):
    m = sources.read_npz(source / "mnist.npz")
    for key, stem in sources.MNIST_FILES.items():
        a = m[key]
        header = bytes([0, 0, 8, a.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in a.shape)
        (tmp_path / f"{stem}.gz").write_bytes(gzip.compress(header + a.tobytes(), compresslevel=1))
    out = data.prepare("mnist", str(tmp_path), tmp_path / "prepared")
    got = sources.read_npz(out)
    assert all(np.array_equal(got[k], m[k]) for k in data.ARRAYS)
    assert np.bincount(got["y_train"]).tolist() == [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]


def test_download_route_converts_torchvision_datasets(tmp_path, monkeypatch, cifar):
    import torchvision.datasets as tvd

    class FakeCIFAR10:  # what torchvision's CIFAR10 exposes after download=True
        def __init__(self, root, train, download):
            assert download
            split = "train" if train else "test"
            self.data, self.targets = cifar[f"x_{split}"], cifar[f"y_{split}"].tolist()

    monkeypatch.setattr(tvd, "CIFAR10", FakeCIFAR10)
    out = data.prepare("cifar10", "download", tmp_path)
    assert np.array_equal(sources.read_npz(out)["x_test"], cifar["x_test"])


def test_one_flipped_byte_is_rejected_naming_the_array(tmp_path, cifar):
    bad = {k: v.copy() for k, v in cifar.items()}
    bad["x_test"].reshape(-1)[12345] ^= 1
    np.savez(tmp_path / "cifar10.npz", **bad)
    with pytest.raises(FastAdvError, match=r"array x_test does not match cifar10"):
        data.prepare("cifar10", str(tmp_path / "cifar10.npz"), tmp_path / "out")
    assert not (tmp_path / "out" / "cifar10.npz").exists()


def test_truncated_and_missing_files_give_clear_errors(tmp_path, source):
    raw = (source / "mnist.npz").read_bytes()
    (tmp_path / "mnist.npz").write_bytes(raw[: len(raw) // 2])
    with pytest.raises(FastAdvError, match="corrupt or truncated"):
        data.prepare("mnist", str(tmp_path / "mnist.npz"), tmp_path / "out")
    with pytest.raises(FastAdvError, match="not found"):
        data.prepare("mnist", str(tmp_path / "nope.npz"), tmp_path / "out")
    with pytest.raises(FastAdvError, match="prepared data .* not found"):
        data.load_arrays(tmp_path / "empty", "cifar10")
    with pytest.raises(FastAdvError, match="unknown dataset 'cifar100'; valid: cifar10, imagenet, mnist, svhn"):
        dataset_spec("cifar100")
    with pytest.raises(FastAdvError, match="imagenet cannot be downloaded automatically"):
        data.prepare("imagenet", "download", tmp_path / "out")


def test_prepared_file_is_mapped_and_still_verified_on_every_load(tmp_path, source):
    """load_arrays maps the prepared file's members (sources.read_npz(mmap=True)) instead of reading them: the same
    arrays as a plain read; a byte flipped in the prepared file, or the file cut short, is still an error."""
    out = data.prepare("mnist", str(source), tmp_path / "ok")
    mapped, read = data.load_arrays(tmp_path / "ok", "mnist"), sources.read_npz(out)
    assert all(isinstance(mapped[k], np.memmap) for k in read)
    assert all(np.array_equal(mapped[k], read[k]) and mapped[k].dtype == read[k].dtype for k in read)
    raw = bytearray(out.read_bytes())
    offset = raw.index(b"x_train.npy") + 200  # past the member's headers, inside its pixels
    raw[offset] ^= 1
    (tmp_path / "flipped").mkdir()
    (tmp_path / "flipped/mnist.npz").write_bytes(bytes(raw))
    with pytest.raises(FastAdvError, match=r"array x_train does not match mnist"):
        data.load_arrays(tmp_path / "flipped", "mnist")
    (tmp_path / "cut").mkdir()
    (tmp_path / "cut/mnist.npz").write_bytes(out.read_bytes()[:-1000])
    with pytest.raises(FastAdvError, match="corrupt or truncated"):
        data.load_arrays(tmp_path / "cut", "mnist")


def test_prepare_failure_keeps_previous_file(tmp_path, source):
    out = data.prepare("mnist", str(source), tmp_path)
    before = out.read_bytes()
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(FastAdvError):
        data.prepare("mnist", str(tmp_path / "bad.npz"), tmp_path)
    assert out.read_bytes() == before


def test_svhn_mat_layout_maps_label_10_to_0(tmp_path):
    rng = np.random.default_rng(0)
    for split, n in (("train", 9), ("test", 4)):
        X = rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8)
        y = np.array([[10], [1], [2], [3], [4], [5], [6], [7], [8]][:n], dtype=np.uint8)
        scipy.io.savemat(tmp_path / f"{split}_32x32.mat", {"X": X, "y": y})
    got = sources.read_svhn_mat(tmp_path, check_md5=False)
    assert got["x_train"].shape == (9, 32, 32, 3)
    assert got["y_train"].tolist() == [0, 1, 2, 3, 4, 5, 6, 7, 8]
    X = scipy.io.loadmat(tmp_path / "train_32x32.mat")["X"]
    assert np.array_equal(got["x_train"][4], X[:, :, :, 4])
    data.verify_arrays("svhn", got, "synthetic")  # structural checks pass
    with pytest.raises(FastAdvError, match="MD5"):  # not the official file
        data.prepare("svhn", str(tmp_path), tmp_path / "out")


def test_batch_crop_and_flip_match_a_per_example_reference():
    torch.manual_seed(0)
    x = torch.rand(16, 3, 32, 32)
    gen = torch.Generator().manual_seed(5)
    got = data.random_crop(x, 4, gen)
    gen = torch.Generator().manual_seed(5)
    di = torch.randint(0, 9, (16,), generator=gen)
    dj = torch.randint(0, 9, (16,), generator=gen)
    padded = torch.nn.functional.pad(x, (4, 4, 4, 4))
    ref = torch.stack([padded[i, :, di[i]:di[i] + 32, dj[i]:dj[i] + 32] for i in range(16)])
    assert torch.equal(got, ref)
    flipped = data.random_flip(x, torch.Generator().manual_seed(1))
    which = torch.rand(16, generator=torch.Generator().manual_seed(1)) < 0.5
    for i in range(16):
        assert torch.equal(flipped[i], x[i].flip(2) if which[i] else x[i])
    assert 0 < which.sum() < 16


def test_subset_first_and_random():
    assert data.subset_indices(100, 5, "first", 0).tolist() == [0, 1, 2, 3, 4]
    r1, r2 = data.subset_indices(100, 5, "random", 1), data.subset_indices(100, 5, "random", 1)
    assert torch.equal(r1, r2) and len(set(r1.tolist())) == 5
    assert not torch.equal(r1, data.subset_indices(100, 5, "random", 2))
    assert len(data.subset_indices(10, None, "first", 0)) == 10
