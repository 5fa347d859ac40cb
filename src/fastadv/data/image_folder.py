"""ImageNet-style data: torchvision's ImageFolder layout, ``<source>/{train,val}/<class>/<image>``.

For the paper's ImageNet experiment (Andriushchenko & Flammarion 2020, following Wong et al.,
ICLR 2020: ResNet-50, 224 px). ImageNet cannot be downloaded without an account, so the only
source is a local folder. ``fastadv prepare --dataset imagenet --source DIR`` checks the layout
(train and val hold the same class folders, at most 1,000 classes, every image readable as far as
its header) and writes ``<root>/imagenet.json`` atomically: the source folder, the classes (sorted,
label = index, as ImageFolder) and each split's files with their byte and pixel sizes (the pixel
size comes from the header read of the check and spares drawing a training crop a second file
open). Loading checks that the split's first and last files are still there with the same byte
sizes (a cheap staleness check; a full re-check is `prepare` again), so a moved or replaced
folder is an error, not other data.

Files are listed in the order of SHA-256 of their relative paths: a fixed, layout-independent
pseudo-random order, so ``subset: N`` (mode first) and "the first N test images" mix classes
instead of taking the first class folders. Images are decoded per batch (the dataset does not
fit in memory) on a thread pool. Training: random-resized crop (scale 0.08–1, aspect 3/4–4/3)
to 224 px + horizontal flip, parameters drawn from the training generator (reproducible);
test: shorter side resized to 256, centre 224 crop — the standard ResNet-50 pipeline.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import torch

from fastadv import atomic
from fastadv.data.subset import subset_indices
from fastadv.errors import FastAdvError

MANIFEST_FORMAT = "fastadv-imagefolder-2"  # files: [path, label, bytes, width, height]
SPLITS = {"train": "train", "test": "val"}
EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
MAX_CLASSES = 1000
CROP, RESIZE = 224, 256          # test: resize shorter side to 256, centre crop 224
CROP_SCALE = (0.08, 1.0)         # random-resized crop (Szegedy et al. 2015; torchvision defaults)
CROP_RATIO = (3 / 4, 4 / 3)


def manifest_path(root, dataset: str = "imagenet") -> Path:
    return Path(root) / f"{dataset}.json"


def scan(source: str | Path) -> dict:
    """The manifest of an ImageFolder tree (raises on a bad layout or unreadable image)."""
    from PIL import Image, UnidentifiedImageError

    source = Path(source).resolve()
    if not (source / "train").is_dir() and (source / "imagenet").is_dir():
        source = source / "imagenet"  # a shared data folder ($FASTADV_DATA_SOURCE) holding imagenet/
    classes = {}
    for folder in SPLITS.values():
        d = source / folder
        if not d.is_dir():
            raise FastAdvError(f"ImageFolder source {str(source)!r} has no {folder}/ folder; "
                               "expected <source>/train/<class>/<image> and <source>/val/<class>/<image>")
        classes[folder] = sorted(p.name for p in d.iterdir() if p.is_dir())
    if classes["train"] != classes["val"]:
        only = sorted(set(classes["train"]) ^ set(classes["val"]))
        raise FastAdvError(f"{source}: train/ and val/ hold different class folders ({', '.join(only[:5])} …)")
    names = classes["train"]
    if not 1 <= len(names) <= MAX_CLASSES:
        raise FastAdvError(f"{source}: {len(names)} class folders; valid: 1 to {MAX_CLASSES}")
    splits = {}
    for folder in SPLITS.values():
        files = []
        for label, name in enumerate(names):
            for p in sorted((source / folder / name).rglob("*")):
                if p.is_file() and p.suffix.lower() in EXTENSIONS:
                    rel = p.relative_to(source).as_posix()
                    try:
                        with Image.open(p) as im:
                            width, height = im.size  # header only: cheap, catches non-images
                    except (UnidentifiedImageError, OSError) as e:
                        raise FastAdvError(f"{p}: not a readable image ({type(e).__name__})") from None
                    files.append([rel, label, p.stat().st_size, width, height])
        if not files:
            raise FastAdvError(f"{source / folder}: no images ({', '.join(EXTENSIONS)})")
        files.sort(key=lambda f: hashlib.sha256(f[0].encode()).hexdigest())
        splits[folder] = files
    return {"format": MANIFEST_FORMAT, "source": str(source), "classes": names, "splits": splits}


def prepare(source: str | Path, root: str | Path, dataset: str = "imagenet") -> Path:
    out = manifest_path(root, dataset)
    atomic.write_json(out, scan(source))
    return out


def load_manifest(root, dataset: str = "imagenet") -> dict:
    path = manifest_path(root, dataset)
    if not path.is_file():
        raise FastAdvError(f"prepared data {str(path)!r} not found; run: fastadv prepare --dataset {dataset} "
                           "--source <ImageFolder dir>")
    try:
        man = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FastAdvError(f"{path}: corrupt manifest ({type(e).__name__}: {e})") from None
    if not isinstance(man, dict) or man.get("format") != MANIFEST_FORMAT:
        raise FastAdvError(f"{path}: not a {MANIFEST_FORMAT} manifest; run fastadv prepare again")
    return man


def _crop_box(w: int, h: int, gen: torch.Generator) -> tuple[int, int, int, int]:
    """(top, left, height, width) of a random-resized crop, as torchvision's algorithm
    (10 tries of a random area and log-uniform aspect ratio, else the central crop)."""
    area = w * h
    log_lo, log_hi = math.log(CROP_RATIO[0]), math.log(CROP_RATIO[1])
    for _ in range(10):
        u = torch.rand(2, generator=gen, dtype=torch.float64)
        target = area * (CROP_SCALE[0] + (CROP_SCALE[1] - CROP_SCALE[0]) * float(u[0]))
        ratio = math.exp(log_lo + (log_hi - log_lo) * float(u[1]))
        cw, ch = round(math.sqrt(target * ratio)), round(math.sqrt(target / ratio))
        if 0 < cw <= w and 0 < ch <= h:
            top = int(torch.randint(0, h - ch + 1, (1,), generator=gen))
            left = int(torch.randint(0, w - cw + 1, (1,), generator=gen))
            return top, left, ch, cw
    in_ratio = w / h
    if in_ratio < CROP_RATIO[0]:
        cw, ch = w, round(w / CROP_RATIO[0])
    elif in_ratio > CROP_RATIO[1]:
        ch, cw = h, round(h * CROP_RATIO[1])
    else:
        cw, ch = w, h
    return (h - ch) // 2, (w - cw) // 2, ch, cw


class FolderDataset:
    """A split of an ImageFolder tree; the same interface as :class:`fastadv.data.datasets.DeviceDataset`."""

    def __init__(self, source: Path, files: list, device: torch.device, augment: bool, threads: int = 0,
                 eval_crop: int | None = None):
        self.source, self.files, self.device, self.augment = source, files, device, augment
        self.eval_crop = eval_crop  # test images: a centre crop of this size of the full image, no resize
        self.y = torch.tensor([f[1] for f in files], dtype=torch.long, device=device)
        self.threads = threads or min(8, os.cpu_count() or 1)

    def __len__(self) -> int:
        return len(self.files)

    def _load(self, i: int, box, flip: bool) -> torch.Tensor:
        from PIL import Image
        from torchvision.transforms import functional as TF

        with Image.open(self.source / self.files[i][0]) as im:
            im = im.convert("RGB")
            if box is None and self.eval_crop:  # Wong et al.'s ImageNet evaluation (RobustBench's Crop288)
                im = TF.center_crop(im, self.eval_crop)
            elif box is None:
                im = TF.center_crop(TF.resize(im, RESIZE), CROP)
            else:
                im = TF.resized_crop(im, *box, [CROP, CROP])
            t = TF.pil_to_tensor(im)
        return t.flip(2) if flip else t

    def batch(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float [0,1] batch for indices ``idx``; random crop + flip when ``gen`` is given and
        augmentation is on (all random draws happen here, in order, so results are reproducible;
        the crop uses the pixel size recorded in the manifest)."""
        ids = [int(i) for i in idx]
        plans = []
        for i in ids:
            if gen is not None and self.augment:
                box = _crop_box(*self.files[i][3:5], gen)
                plans.append((i, box, bool(torch.rand(1, generator=gen) < 0.5)))
            else:
                plans.append((i, None, False))
        with ThreadPoolExecutor(self.threads) as pool:
            imgs = list(pool.map(lambda p: self._load(*p), plans))
        x = torch.stack(imgs).to(self.device).float().div_(255)
        return x, self.y[torch.as_tensor(ids, device=self.device)]

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(torch.arange(min(n, len(self))))


def load_split(root, dataset: str, split: str, device, subset=None, subset_mode="first", seed=0,
               augment: bool = False, eval_crop: int | None = None) -> FolderDataset:
    man = load_manifest(root, dataset)
    source = Path(man["source"])
    files = man["splits"][SPLITS[split]]
    for rel, _, size, *_ in (files[0], files[-1]):  # cheap staleness check; `prepare` again after changes
        p = source / rel
        if not p.is_file() or p.stat().st_size != size:
            raise FastAdvError(f"{p}: missing or changed since `fastadv prepare` "
                               f"(manifest {manifest_path(root, dataset)})")
    idx = subset_indices(len(files), subset, subset_mode, seed)
    return FolderDataset(source, [files[i] for i in idx], torch.device(device), augment, eval_crop=eval_crop)
