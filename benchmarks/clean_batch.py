"""The evaluation's whole-split clean pass by batch size (issue 29; not part of the package).

`fastadv evaluate` computes clean accuracy on the whole test split in batches of `evaluate.batch_size`
(fastadv.evaluation.protocol.split_accuracy). On a CPU, large batches of a narrow network overflow the caches; this
times that pass for each batch size on the scale's model (freshly initialised: the time does not depend on the
weights), median [min, max] of interleaved repeats, and the ratio to the largest batch; the accuracies must agree.

Usage (repository root, after `make setup` and the data step; nothing else on the cores):

    .venv/bin/python benchmarks/clean_batch.py --scale quick --threads 1 --repeats 3
"""
from __future__ import annotations

import argparse

import torch

from fastadv.config.params import default_params
from fastadv.config.run_config import as_train_config
from fastadv.config.study import Study
from fastadv.data.datasets import load_split
from fastadv.performance.benchmark import interleaved, spread
from fastadv.evaluation.protocol import split_accuracy
from fastadv.training.step import make_model
from fastadv.training.runtime import hardware_stamp


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-sizes", type=int, nargs="+", default=[1024, 512, 256, 128])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = as_train_config(Study.load(default_params(), args.scale).train_config())
    device = torch.device("cpu")
    model = make_model(cfg, device).eval()
    split = load_split(cfg.data.root, cfg.data.dataset, "test", device)
    acc = {}

    def timed(bs):
        def run():
            acc[bs] = split_accuracy(model, split, bs)
        return run

    seconds = interleaved({bs: timed(bs) for bs in args.batch_sizes}, args.repeats, device)
    hw, base = hardware_stamp(device), args.batch_sizes[0]
    print(f"clean pass over {len(split)} test images, {cfg.model.name} width {cfg.model.width} ({hw['cpu']}, "
          f"{hw['torch_threads']} thread(s), torch {hw['torch']}), median [min, max] of {args.repeats} repeats:")
    for bs in args.batch_sizes:
        s = spread(seconds[bs])
        ratio = spread([a / b for a, b in zip(seconds[base], seconds[bs])])["median"]
        print(f"  batch {bs:>5}: {s['median']:.2f} s [{s['min']:.2f}, {s['max']:.2f}]  {ratio:.2f}x batch {base}"
              f"  accuracy {acc[bs]:.4f}")
    print(f"accuracies agree: {len(set(acc.values())) == 1}")


if __name__ == "__main__":
    main()
