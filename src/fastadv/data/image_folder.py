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
fit in memory). Training: random-resized crop (scale 0.08–1, aspect 3/4–4/3) to ``crop`` px +
horizontal flip, parameters drawn in the main process from the training generator (reproducible:
the draws are the same whoever decodes); test: shorter side resized to 256, centre 224 crop — the
standard ResNet-50 pipeline — or, with a ``crop`` given, the centre ``crop`` of the image as it is
(Wong et al.'s validation: CenterCrop(crop_size) without a resize). Decoding runs on a thread pool,
or with ``workers`` > 0 in DataLoader worker processes (pinned memory on a GPU), each decoding whole
batches; a data-parallel rank decodes only its shard.

Resized copies (Wong et al.'s resize.py, for the phases of their recipe) live beside the manifest as
``<root>/<dataset>-<size>/`` with their own manifest ``<root>/<dataset>-<size>.json``
(fastadv.data.resized_copies).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections import deque
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


def manifest_path(root, dataset: str = "imagenet", images: int | None = None) -> Path:
    """The manifest of the original images, or of the copies resized to a shorter side of ``images`` px."""
    return Path(root) / (f"{dataset}.json" if images is None else f"{dataset}-{images}.json")


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


def load_manifest(root, dataset: str = "imagenet", images: int | None = None) -> dict:
    path = manifest_path(root, dataset, images)
    if not path.is_file():
        how = "" if images is None else f" --resize {images}"
        raise FastAdvError(f"prepared data {str(path)!r} not found; run: fastadv prepare --dataset {dataset} "
                           f"--source <ImageFolder dir>{how}")
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


def decode(path: Path, box, flip: bool, crop: int, resize: int | None) -> torch.Tensor:
    """One image as uint8 CHW: the random-resized ``box`` scaled to ``crop`` px (training), else the centre
    ``crop`` after resizing the shorter side to ``resize`` (None: as it is)."""
    from PIL import Image
    from torchvision.transforms import functional as TF

    with Image.open(path) as im:
        im = im.convert("RGB")
        if box is None:
            im = TF.center_crop(TF.resize(im, resize) if resize else im, crop)
        else:
            im = TF.resized_crop(im, *box, [crop, crop])
        t = TF.pil_to_tensor(im)
    return t.flip(2) if flip else t


class _Plans(torch.utils.data.Dataset):
    """DataLoader view of a folder: an item is a plan (path, label, box, flip), decoded in a worker."""

    def __init__(self, crop: int, resize: int | None):
        self.crop, self.resize = crop, resize

    def __getitem__(self, plan):
        path, label, box, flip = plan
        return decode(path, box, flip, self.crop, self.resize), label


class _PlanSampler:
    """The batches of plans of one pass, drawn lazily as the DataLoader prefetches them; their bounds queue up in
    order. :meth:`start` sets the next pass's (a persistent loader iterates its sampler once per pass)."""

    def __init__(self):
        self.planned, self.bounds = iter(()), deque()

    def start(self, planned) -> None:
        self.planned, self.bounds = planned, deque()

    def __iter__(self):
        for plans, bounds in self.planned:
            self.bounds.append(bounds)
            yield plans


class FolderDataset:
    """A split of an ImageFolder tree; the same interface as :class:`fastadv.data.datasets.DeviceDataset`."""

    def __init__(self, source: Path, files: list, device: torch.device, augment: bool, crop: int | None = None,
                 threads: int = 0, workers: int = 0):
        self.source, self.files, self.device, self.augment = source, files, device, augment
        self.y = torch.tensor([f[1] for f in files], dtype=torch.long, device=device)
        self.crop, self.resize = (CROP, RESIZE) if crop is None else (crop, None)
        self.threads = threads or min(8, os.cpu_count() or 1)
        self.workers = workers
        self.generator_device = torch.device("cpu")  # crops are drawn on the host, before decoding
        self._loader = self._sampler = None

    def __len__(self) -> int:
        return len(self.files)

    def plans(self, idx, gen: torch.Generator | None = None) -> list:
        """(path, label, box, flip) per index: the random crop and flip drawn here, in order, when ``gen`` is given
        and augmentation is on (the crop uses the pixel size recorded in the manifest)."""
        out = []
        for i in (int(i) for i in idx):
            rel, label, *_, w, h = self.files[i]
            if gen is not None and self.augment:
                box = _crop_box(w, h, gen)
                out.append((self.source / rel, label, box, bool(torch.rand(1, generator=gen) < 0.5)))
            else:
                out.append((self.source / rel, label, None, False))
        return out

    def _stack(self, imgs, labels) -> tuple[torch.Tensor, torch.Tensor]:
        x = torch.stack(list(imgs)) if not torch.is_tensor(imgs) else imgs
        return x.to(self.device).float().div_(255), torch.as_tensor(labels, dtype=torch.long).to(self.device)

    def batch(self, idx: torch.Tensor, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Float [0,1] batch for indices ``idx`` (augmented when ``gen`` is given), decoded on a thread pool."""
        return self._decoded(self.plans(idx, gen))

    def _decoded(self, plans: list) -> tuple[torch.Tensor, torch.Tensor]:
        with ThreadPoolExecutor(self.threads) as pool:
            imgs = list(pool.map(lambda p: decode(p[0], p[2], p[3], self.crop, self.resize), plans))
        return self._stack(imgs, [p[1] for p in plans])

    def iterate(self, batches, shard=(0, 1)):
        """(x, y, (offset, size of the global batch)) per (indices, generator) of ``batches``: the draws of the
        whole global batch, the decoding of this rank's shard only (``shard``: rank, world)."""
        from fastadv.shard import shard_bounds

        def planned():
            for idx, gen in batches:
                plans = self.plans(idx, gen)
                off, n = shard_bounds(len(plans), *shard)
                yield plans[off:off + n], (off, len(plans))

        if self.workers == 0:
            for plans, bounds in planned():
                yield (*self._decoded(plans), bounds)
            return
        if self._loader is None:  # one loader per split: its worker processes persist from epoch to epoch
            self._sampler = _PlanSampler()
            self._loader = torch.utils.data.DataLoader(
                _Plans(self.crop, self.resize), batch_sampler=self._sampler, num_workers=self.workers,
                pin_memory=self.device.type == "cuda", persistent_workers=True)
        self._sampler.start(planned())
        for x, y in self._loader:  # in order: the workers' batches come back as the sampler handed them out
            yield (*self._stack(x, y), self._sampler.bounds.popleft())

    def head(self, n: int) -> tuple[torch.Tensor, torch.Tensor]:
        return self.batch(torch.arange(min(n, len(self))))


def load_split(root, dataset: str, split: str, device, subset=None, subset_mode="first", seed=0,
               augment: bool = False, images: int | None = None, crop: int | None = None,
               workers: int = 0) -> FolderDataset:
    """A split of the original images or of their copies resized to ``images`` px; ``crop``: see the module."""
    man = load_manifest(root, dataset, images)
    source = Path(man["source"])
    files = man["splits"][SPLITS[split]]
    for rel, _, size, *_ in (files[0], files[-1]):  # cheap staleness check; `prepare` again after changes
        p = source / rel
        if not p.is_file() or p.stat().st_size != size:
            raise FastAdvError(f"{p}: missing or changed since `fastadv prepare` "
                               f"(manifest {manifest_path(root, dataset, images)})")
    idx = subset_indices(len(files), subset, subset_mode, seed)
    return FolderDataset(source, [files[i] for i in idx], torch.device(device), augment, crop, workers=workers)
