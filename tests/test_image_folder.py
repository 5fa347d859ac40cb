"""ImageNet-style folders (ImageFolder layout) and ResNet-50 through the same prepare/train/evaluate CLI,
on a tiny synthetic tree."""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image

from fastadv.cli import main
from fastadv.data.datasets import load_split
from fastadv.errors import FastAdvError
from fastadv.data.image_folder import CROP_RATIO, CROP_SCALE, _crop_box, prepare
from fastadv.training.loop import FINISHED
from tests.helpers import PARAMS

CLASSES = ["n02", "n01", "n03"]  # deliberately unsorted: labels follow the sorted names


def make_tree(root, n_train=4, n_val=2, seed=0):
    rng = np.random.default_rng(seed)
    for split, n in (("train", n_train), ("val", n_val)):
        for c in CLASSES:
            (root / split / c).mkdir(parents=True)
            for i in range(n):
                h, w = rng.integers(24, 64, size=2)
                img = Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
                img.save(root / split / c / f"{c}_{i}.{'png' if i % 2 else 'jpg'}")
    return root


@pytest.fixture
def tree(tmp_path):
    return make_tree(tmp_path / "imagenet")


def test_prepare_lists_every_image_with_imagefolder_labels(tree, tmp_path):
    out = prepare(tree, tmp_path / "data")
    man = json.loads(out.read_text())
    assert man["classes"] == sorted(CLASSES)
    for split, n in (("train", 4), ("val", 2)):
        files = man["splits"][split]
        assert len(files) == 3 * n
        for rel, label, size, width, height in files:
            assert rel.split("/")[1] == sorted(CLASSES)[label]
            assert (tree / rel).stat().st_size == size
            with Image.open(tree / rel) as im:
                assert im.size == (width, height)
    # a fixed order that mixes classes (not the folder order)
    labels = [f[1] for f in man["splits"]["train"]]
    assert labels != sorted(labels)
    # a data folder holding imagenet/ works as the source too (as $FASTADV_DATA_SOURCE)
    assert json.loads(prepare(tmp_path, tmp_path / "data2").read_text())["splits"] == man["splits"]


def drop_val_class(t):
    for p in (t / "val" / "n03").iterdir():
        p.unlink()
    (t / "val" / "n03").rmdir()


def add_fake_image(t):
    (t / "train" / "n01" / "bad.jpg").write_bytes(b"not an image")


def empty_val(t):
    for p in (t / "val").rglob("*.*"):
        p.unlink()


@pytest.mark.parametrize("breakage, message", [
    (drop_val_class, "train/ and val/ hold different class folders"),
    (add_fake_image, "bad.jpg: not a readable image"),
    (empty_val, "no images"),
])
def test_bad_layouts_are_refused_with_the_reason(tree, tmp_path, breakage, message):
    breakage(tree)
    with pytest.raises(FastAdvError, match=message):
        prepare(tree, tmp_path / "data")
    assert not (tmp_path / "data" / "imagenet.json").exists()


def test_missing_manifest_and_changed_folder_are_errors(tree, tmp_path):
    with pytest.raises(FastAdvError, match="imagenet.json' not found; run: fastadv prepare --dataset imagenet"):
        load_split(tmp_path / "data", "imagenet", "train", "cpu")
    man = json.loads(prepare(tree, tmp_path / "data").read_text())
    first = tree / man["splits"]["val"][0][0]
    first.write_bytes(first.read_bytes() + b"x")
    with pytest.raises(FastAdvError, match="changed since `fastadv prepare`"):
        load_split(tmp_path / "data", "imagenet", "test", "cpu")


def test_batches_are_224px_in_unit_range_and_augmentation_is_seeded(tree, tmp_path):
    prepare(tree, tmp_path / "data")
    train = load_split(tmp_path / "data", "imagenet", "train", "cpu", augment=True)
    test = load_split(tmp_path / "data", "imagenet", "test", "cpu")
    x, y = test.head(6)
    assert x.shape == (6, 3, 224, 224) and x.dtype == torch.float32 and 0 <= x.min() and x.max() <= 1
    assert torch.equal(test.head(6)[0], x)  # test transform is deterministic
    idx = torch.arange(5)
    a, ya = train.batch(idx, torch.Generator().manual_seed(1))
    b, _ = train.batch(idx, torch.Generator().manual_seed(1))
    c, _ = train.batch(idx, torch.Generator().manual_seed(2))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(ya, train.y[:5])
    # subset: first N of the fixed order
    assert len(load_split(tmp_path / "data", "imagenet", "train", "cpu", subset=7)) == 7


def test_random_resized_crop_box_follows_its_definition():
    """Inside the image, area fraction in [0.08, 1] and aspect ratio in [3/4, 4/3] (up to pixel
    rounding), else the central fallback crop; many draws, several image shapes."""
    gen = torch.Generator().manual_seed(0)
    for w, h in ((500, 375), (64, 24), (30, 30), (1000, 40)):
        fallback = 0
        for _ in range(300):
            top, left, ch, cw = _crop_box(w, h, gen)
            assert 0 <= top and top + ch <= h and 0 <= left and left + cw <= w and ch > 0 and cw > 0
            frac, ratio = cw * ch / (w * h), cw / ch
            inside = (CROP_SCALE[0] * 0.9 <= frac <= CROP_SCALE[1]
                      and CROP_RATIO[0] * 0.9 <= ratio <= CROP_RATIO[1] * 1.1)
            central = top == (h - ch) // 2 and left == (w - cw) // 2
            assert inside or central
            fallback += not inside
        if w / h > 4:  # a very wide image mostly falls back to the central 4/3 crop
            assert fallback > 0
    # the fallback crop of a wide image has the largest allowed aspect ratio
    top, left, ch, cw = _crop_box(1000, 10, torch.Generator().manual_seed(3))
    assert ch == 10 and math.isclose(cw / ch, CROP_RATIO[1], rel_tol=0.1)


@pytest.mark.slow
def test_resnet50_trains_and_evaluates_on_an_image_folder_through_the_cli(tree, tmp_path):
    data = tmp_path / "data"
    assert main(["prepare", "--dataset", "imagenet", "--source", str(tree), "--root", str(data)]) == 0
    run = tmp_path / "run"
    sets = ["data.dataset=imagenet", f"data.root={data}", "model.name=resnet50", "model.width=8",
            "model.normalize=true", "method.name=fgsm", "method.eps=4", "optim.epochs=1", "optim.batch_size=6",
            "monitor.test_points=2", "monitor.train_points=2", "monitor.pgd_steps=1", "runtime.threads=1",
            "runtime.progress=never"]
    args = ["train", "--params", str(PARAMS), "--out", str(run)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["status"] in FINISHED and summary["config"]["model"]["name"] == "resnet50"
    res_path = tmp_path / "eval.json"
    assert main(["evaluate", "--params", str(PARAMS), "--model", str(run / "model_final.pt"), "--out", str(res_path),
                 "--set", "n_points=3", "--set", "batch_size=3", "--set", "threads=1",
                 "--set", "crop=24",  # the centre 24 px (every image's shorter side is 24-63 px), not 224
                 "--set", "targeted_steps=[2]", "--set", "multitargeted=true", "--set", "multitargeted_targets=2",
                 "--set", "multitargeted_restarts=2", "--set", "multitargeted_steps=2"]) == 0
    res = json.loads(res_path.read_text())
    assert res["dataset"] == "imagenet" and res["n_points"] == 3
    assert res["clean_acc_full"] is not None and 0 <= res["pgd"]["acc"] <= res["clean_acc"] <= 1
    # The stronger attacks on an image folder: targets drawn among the model's 1000 classes (ImageNet's K).
    assert res["targeted"]["classes"] == 1000 and set(res["targeted"]["runs"]) == {"2"}
    r = res["targeted"]["runs"]["2"]
    assert r["acc"] + r["success"] <= 1 and 0 <= res["multitargeted"]["acc"] <= res["clean_acc"]
