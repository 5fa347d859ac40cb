"""torch.compile on the single-backward paths against eager (issue 29, part 2; not part of the package).

The training steps of FGSM, FGSM-RS and PGD-2 (the scale's model, layout and batch; fastadv.performance.benchmark's
step_runner) and steps of PGD-50-10's attack (α = ε/4, eval mode, 200 points, the evaluation's layout), each eager
and under ``torch.compile`` (inductor, dynamic=False): the first compiled call's seconds (compilation included), the
seconds per step as the median [min, max] of interleaved repeats and compiled / eager; and the agreement of the
numbers on the same weights and batch: max |Δ| of the logits, the cosine of the input gradients and the share of
their signs that differ.

Usage (repository root, after `make setup`; nothing else on the cores):

    .venv/bin/python benchmarks/compile_probe.py --scale quick --threads 1 --repeats 3
"""
from __future__ import annotations

import argparse
import copy
import time

import torch
import torch.nn.functional as F

from fastadv.attacks.pgd import pgd_perturbation
from fastadv.config.params import default_params
from fastadv.config.run_config import as_train_config
from fastadv.config.study import Study
from fastadv.performance.benchmark import interleaved, random_batch, spread, step_runner
from fastadv.training.step import make_model
from fastadv.training.runtime import hardware_stamp, in_layout

EPS = 16 / 255


def compiled(model):
    return torch.compile(model, dynamic=False)


def agreement(model, x, y) -> tuple[float, float, float]:
    """(max |Δ logits|, cosine of the input gradients ∇ₓℓ, share of their signs that differ — what FGSM and PGD
    step along), eager vs compiled, each on its own copy of ``model``."""
    out = []
    for m in (copy.deepcopy(model), compiled(copy.deepcopy(model))):
        xr = x.clone().requires_grad_(True)
        logits = m(xr)
        out.append((logits.detach(), torch.autograd.grad(F.cross_entropy(logits, y), xr)[0]))
    (l0, g0), (l1, g1) = out
    cos = F.cosine_similarity(g0.flatten(), g1.flatten(), dim=0)
    return float((l0 - l1).abs().max()), float(cos), float((g0.sign() != g1.sign()).double().mean())


def first_call(run) -> float:
    start = time.perf_counter()
    run(1)
    return time.perf_counter() - start


def training_rows(study, methods, iterations: int, repeats: int) -> list[tuple]:
    rows = []
    for method in methods:
        cfg = as_train_config(study.train_config("fig1", method, 16.0, 0))  # a variant of the params file
        x, y = random_batch(cfg.phases[0].batch_size)
        eager = step_runner(cfg, cfg.method.name, x, y, iterations, 1, torch.device("cpu"))
        start = time.perf_counter()
        comp = step_runner(cfg, cfg.method.name, x, y, iterations, 1, torch.device("cpu"), wrap=compiled)
        compile_s = time.perf_counter() - start
        times = interleaved({"eager": eager, "compiled": comp}, repeats, torch.device("cpu"))
        model = in_layout(make_model(cfg, torch.device("cpu")), eager.channels_last).train()
        rows.append((f"train {method}{' (channels-last)' if eager.channels_last else ''}", compile_s, times, iterations,
                     agreement(model, in_layout(x, eager.channels_last), y)))
    return rows


def attack_rows(study, points: int, steps: int, repeats: int) -> list[tuple]:
    cfg = as_train_config(study.train_config(sets=["method.name=fgsm"]))
    model = make_model(cfg, torch.device("cpu")).eval()  # evaluation runs in the default layout
    x, y = random_batch(points, seed=1)
    delta = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2)) * 2 - 1) * EPS
    comp = compiled(model)

    def attack(m):
        return lambda n=1: pgd_perturbation(m, x, y, EPS, EPS / 4, steps * n, delta)

    compile_s = first_call(attack(comp))
    times = interleaved({"eager": attack(model), "compiled": attack(comp)}, repeats, torch.device("cpu"))
    return [(f"PGD attack, {points} points", compile_s, times, steps,
             agreement(model, x, y))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--iterations", type=int, default=5, help="training steps (and PGD steps) per timed repeat")
    ap.add_argument("--methods", nargs="+", default=["fgsm", "fgsm_rs", "pgd2"])
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    study = Study.load(default_params(), args.scale)
    rows = training_rows(study, args.methods, args.iterations, args.repeats)
    rows += attack_rows(study, 200, args.iterations, args.repeats)
    hw = hardware_stamp(torch.device("cpu"))
    print(f"{hw['cpu']}, {hw['torch_threads']} thread(s), torch {hw['torch']}, scale {args.scale}, "
          f"{args.repeats} interleaved repeats")
    print("| path | first compiled call (s) | eager s/step | compiled s/step | compiled / eager | max |Δ logits| | "
          "cos(∇ₓℓ) | signs differing |\n|---|---|---|---|---|---|---|---|")
    for name, compile_s, times, steps, (dl, cos, signs) in rows:
        e, c = spread([t / steps for t in times["eager"]]), spread([t / steps for t in times["compiled"]])
        ratio = spread([a / b for a, b in zip(times["compiled"], times["eager"])])
        print(f"| {name} | {compile_s:.1f} | {e['median']:.4f} [{e['min']:.4f}, {e['max']:.4f}] | "
              f"{c['median']:.4f} [{c['min']:.4f}, {c['max']:.4f}] | {ratio['median']:.2f} | {dl:.1e} | {cos:.7f} | "
              f"{signs:.1e} |")


if __name__ == "__main__":
    main()
