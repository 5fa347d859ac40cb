"""Copies of a prepared image folder resized to a shorter side of N px, for the resolution phases of Wong et al.
(ICLR 2020), locuslab/fast_adversarial ``ImageNet/resize.py``: their phases 1 and 2 read copies resized to 160
and 352 px (``run_fast_4px.sh``: ``~/imagenet-sz/160``, ``/352``), phase 3 the originals.

As their script: each image is scaled by 1/r with r = min(h, w)/N to (⌊w/r⌋, ⌊h/r⌋) pixels, bicubic (small
images are enlarged too), converted to RGB and saved under the same relative path and name, so in the format
its extension names (PIL's defaults: JPEG quality 75). ``<root>/<dataset>-<N>/`` receives the copies and
``<root>/<dataset>-<N>.json`` their manifest, written last: the copies are checked like any source (layout,
every image readable) and must hold exactly the files of the originals' manifest.

Resumable: each copy appears atomically (temporary name, then rename), so an interrupted run leaves only
whole files, and a rerun skips the copies already there.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from tqdm.auto import tqdm

from fastadv import atomic
from fastadv.data import image_folder
from fastadv.errors import FastAdvError


def copy_folder(root, dataset: str, images: int) -> Path:
    return Path(root) / f"{dataset}-{images}"


def resized_size(width: int, height: int, images: int) -> tuple[int, int]:
    """(width, height) of the copy: resize.py's ``ratio = min(h/sz, w/sz)``, ``(int(w/ratio), int(h/ratio))``."""
    ratio = min(height / images, width / images)
    return int(width / ratio), int(height / ratio)


def resize_one(src: Path, dst: Path, images: int) -> None:
    from PIL import Image

    if dst.is_file():
        return
    with Image.open(src) as im:
        out = im.resize(resized_size(*im.size, images), resample=Image.BICUBIC).convert("RGB")
    dst.parent.mkdir(parents=True, exist_ok=True)
    fmt = Image.registered_extensions().get(dst.suffix.lower())
    atomic.write_with(dst, lambda tmp: out.save(tmp, format=fmt))


def _resize_args(args) -> None:
    resize_one(*args)


def prepare_resized(root, dataset: str, images: int, workers: int = 0, progress: bool | None = None) -> Path:
    """Write (or complete) the copies resized to ``images`` px of the prepared ``dataset`` and their manifest."""
    if images < 1:
        raise FastAdvError(f"--resize {images}: the shorter side must be at least 1 px")
    man = image_folder.load_manifest(root, dataset)
    source, dest = Path(man["source"]), copy_folder(root, dataset, images).resolve()
    if dest == source:
        raise FastAdvError(f"{dest}: the copies would overwrite their source")
    jobs = [(source / rel, dest / rel, images) for split in man["splits"].values() for rel, *_ in split]
    show = progress if progress is not None else os.isatty(2)
    bar = tqdm(total=len(jobs), desc=f"resizing {dataset} to {images} px", unit="img", disable=not show)
    if workers == 0:
        for job in jobs:
            resize_one(*job)
            bar.update()
    else:
        with ProcessPoolExecutor(workers) as pool:
            for _ in pool.map(_resize_args, jobs, chunksize=64):
                bar.update()
    bar.close()
    copied = image_folder.scan(dest)
    expected = {split: sorted(f[0] for f in files) for split, files in man["splits"].items()}
    got = {split: sorted(f[0] for f in files) for split, files in copied["splits"].items()}
    if got != expected:
        raise FastAdvError(f"{dest}: the resized copies do not hold exactly the files of {source} "
                           "(remove the folder and prepare again)")
    out = image_folder.manifest_path(root, dataset, images)
    atomic.write_json(out, copied)
    return out
