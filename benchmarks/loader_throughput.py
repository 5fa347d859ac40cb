"""Decode throughput of the image-folder pipeline (fastadv.data.image_folder), in images per second, for each
phase of Wong et al.'s ImageNet recipe: its resized copies (160 px, 352 px, the originals), its random-resized
crop (128, 224, 288 px) + flip, as a training batch is made. Run it alone on the machine:

    .venv/bin/python benchmarks/loader_throughput.py [--images 512] [--workers 0 2] [--repeats 3]

The images are made here: ImageNet-sized JPEGs (500 × 375 px, about the dataset's mean size, quality 90) of
natural content (CIFAR-10 test images enlarged, with sensor-like noise so they do not compress better than
photographs), then resized copies as `fastadv prepare --resize` writes them. ``--workers 0`` decodes on one
thread of this process (the per-core rate); N > 0 in N DataLoader worker processes. Medians of the repeats.
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

PHASES = ((160, 128), (352, 224), (None, 288))  # (resized copies read, crop): configs_fast_4px_phase{1,2,3}.yml


def make_tree(dst: Path, n: int, cifar: Path) -> None:
    from PIL import Image

    rng = np.random.default_rng(0)
    with np.load(cifar) as z:
        x = z["x_test"][:n]
    for split, count in (("train", n), ("val", 10)):
        for i in range(count):
            folder = dst / split / f"c{i % 10}"
            folder.mkdir(parents=True, exist_ok=True)
            img = np.asarray(Image.fromarray(x[i % len(x)]).resize((500, 375), Image.BICUBIC), dtype=np.float32)
            img = np.clip(img + rng.normal(0, 6, img.shape), 0, 255).astype(np.uint8)
            Image.fromarray(img).save(folder / f"img{i:05d}.JPEG", "JPEG", quality=90)


def rate(split, workers: int, repeats: int, batch: int = 64) -> float:
    """Training images per second through FolderDataset.iterate (plans drawn, images decoded and cropped)."""
    from fastadv.training.runtime import generator

    split.workers, split.threads = workers, 1
    times = []
    for r in range(repeats):
        plan = [(torch.arange(i, min(i + batch, len(split))), generator(torch.device("cpu"), r, i, "augment"))
                for i in range(0, len(split), batch)]
        t = time.perf_counter()
        for _ in split.iterate(plan):
            pass
        times.append(time.perf_counter() - t)
    return len(split) / statistics.median(times)


def main() -> None:
    from fastadv.data import image_folder
    from fastadv.data.datasets import load_split
    from fastadv.data.resized_copies import prepare_resized
    from fastadv.training.runtime import hardware_stamp

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=512)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--cifar", default="data/cifar10.npz")
    args = ap.parse_args()
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        tree, root = Path(tmp) / "tree", Path(tmp) / "data"
        make_tree(tree, args.images, Path(args.cifar))
        image_folder.prepare(tree, root)
        for size in (160, 352):
            prepare_resized(root, "imagenet", size, workers=2, progress=False)
        hw = hardware_stamp(torch.device("cpu"))
        kb = sum(f.stat().st_size for f in (tree / "train").rglob("*.JPEG")) / args.images / 1024
        print(f"# {args.images} images 500x375 JPEG q90 ({kb:.0f} KB on average); {hw['cpu']}, {hw['cpu_count']} "
              f"cores, torch {hw['torch']}; one thread per process")
        print("images | crop | workers | images/s")
        for images, crop in PHASES:
            split = load_split(root, "imagenet", "train", "cpu", augment=True, images=images, crop=crop)
            for w in args.workers:
                print(f"{images or 'original'} | {crop} | {w} | {rate(split, w, args.repeats):.0f}", flush=True)


if __name__ == "__main__":
    main()
