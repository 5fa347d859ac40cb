"""Where a training step spends its time, and its arithmetic floor (not part of the package).

For each method, memory layout and (methods that double backprop) runtime.double_backward: the step's FLOPs
(torch.utils.flop_counter over one step: convolutions and matrix products of the forward, the backward and, for
exact GradAlign, the double backward; GradAlign-FD's in parts, see fd_flops_in_parts), the measured seconds
per step (median [min, max] of interleaved repeats, fastadv.performance.benchmark), the GFLOP/s that makes, the
FLOP ratio to FGSM (the floor of the time ratio if every FLOP ran at FGSM's rate) beside the time ratio, and the
torch.profiler's ops of largest self CPU time (layout conversions: aten::copy_ / clone / contiguous).

Usage (repository root, after `make setup`; nothing else on the cores):

    .venv/bin/python benchmarks/step_profile.py --scale quick --threads 1 --repeats 5
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils.flop_counter import FlopCounterMode

from fastadv.config.params import default_params
from fastadv.config.run_config import as_train_config
from fastadv.config.study import Study
from fastadv.performance.benchmark import interleaved, random_batch, spread, step_runner
from fastadv.training.step import make_model
from fastadv.training.runtime import hardware_stamp

DOUBLE_BACKPROP = {"gradalign", "cure", "llr"}  # methods whose input gradient is taken with create_graph
CONVERSIONS = ("aten::copy_", "aten::clone", "aten::contiguous", "aten::_to_copy", "aten::to")


def runner(study, method: str, channels_last: bool, graph: str, steps: int):
    sets = [f"method.name={method}", f"runtime.channels_last={str(channels_last).lower()}", "method.eps=16",
            f"runtime.double_backward={graph}"]
    cfg = as_train_config(study.train_config(sets=sets))
    x, y = random_batch(cfg.phases[0].batch_size)
    return step_runner(cfg, method, x, y, steps, 2, torch.device("cpu"))


def flops_of(run) -> float:
    """FLOPs of one step; NaN where the counter cannot follow the step (GradAlign-FD's autograd.grad over the
    parameters: "A leaf node was passed to _will_engine_execute_node"), said on stdout."""
    try:
        with FlopCounterMode(display=False) as counter:
            run(1)
    except RuntimeError as e:
        print(f"FLOPs not counted: {str(e).splitlines()[0]}")
        return float("nan")
    return counter.get_total_flops()


def fd_flops_in_parts(study, fgsm_flops: float) -> float:
    """GradAlign-FD's FLOPs, which the counter cannot follow: FGSM's step + a forward/backward into θ and the input
    (at x + η: g2 and ∇θℓ) + a forward/backward into θ (at the finite-difference point)."""
    cfg = as_train_config(study.train_config(sets=["method.name=gradalign_fd", "method.eps=16"]))
    model, (x, y) = make_model(cfg, torch.device("cpu")).train(), random_batch(cfg.phases[0].batch_size)
    total = fgsm_flops
    for into_input in (True, False):
        with FlopCounterMode(display=False) as counter:
            F.cross_entropy(model(x.clone().requires_grad_(into_input)), y).backward()
        total += counter.get_total_flops()
    return total


def top_ops(run, steps: int, n: int) -> tuple[list[tuple[str, float, float]], float]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        run(steps)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    return [(e.key, e.self_cpu_time_total / total, e.self_cpu_time_total / 1e6 / steps) for e in events[:n]], \
        sum(e.self_cpu_time_total for e in events if e.key in CONVERSIONS) / total


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--scale", default="quick")
    ap.add_argument("--methods", nargs="+", default=["fgsm", "gradalign", "gradalign_fd"])
    ap.add_argument("--layouts", nargs="+", default=["default", "channels_last"])
    ap.add_argument("--double-backward", nargs="+", default=["native", "fused"],
                    help="runtime.double_backward values, for the methods that double backprop")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=5, help="steps per timed repeat")
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--top", type=int, default=8, help="ops listed per method and layout")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    study = Study.load(default_params(), args.scale)
    runners = {(m, lay, g): runner(study, m, lay == "channels_last", g, args.steps)
               for m in args.methods for lay in args.layouts
               for g in (args.double_backward if m in DOUBLE_BACKPROP else ["native"])}
    flops = {k: flops_of(r) for k, r in runners.items()}
    fgsm = next((f for (m, _, _), f in flops.items() if m == "fgsm"), None)  # the same in every layout
    fd = fd_flops_in_parts(study, fgsm) if fgsm is not None and "gradalign_fd" in args.methods else None
    flops.update({k: fd for k in flops if k[0] == "gradalign_fd" and fd is not None})
    seconds = interleaved(runners, args.repeats, torch.device("cpu"))
    hw = hardware_stamp(torch.device("cpu"))
    print(f"{args.scale} scale, {hw['cpu']} ({torch.backends.cpu.get_cpu_capability()}), {args.threads} thread(s), "
          f"torch {hw['torch']}; median [min, max] of {args.repeats} interleaved repeats of {args.steps} steps")
    print(f"{'method':<13}{'layout':<15}{'double bw':<11}{'s/step':>8}{'[min, max]':>16}{'GFLOP':>8}{'GFLOP/s':>9}"
          f"{'FLOP x FGSM':>12}{'time x FGSM':>12}")
    for (m, lay, g), v in seconds.items():
        s = spread([t / args.steps for t in v])
        base = ("fgsm", lay, "native") if ("fgsm", lay, "native") in seconds else next(iter(seconds))
        ratio = spread([a / b for a, b in zip(v, seconds[base])])["median"]
        f = flops[(m, lay, g)]
        print(f"{m:<13}{lay:<15}{g:<11}{s['median']:8.3f}  [{s['min']:.3f}, {s['max']:.3f}]{f / 1e9:8.2f}"
              f"{f / 1e9 / s['median']:9.1f}{f / flops[base]:12.2f}{ratio:12.2f}")
    for (m, lay, g), r in runners.items():
        ops, conv = top_ops(r, args.steps, args.top)
        print(f"\n{m}, {lay}, {g} double backward: self CPU time per step by op (layout conversions {100 * conv:.1f} %)")
        for key, share, sec in ops:
            print(f"  {key:<45}{100 * share:6.1f} %  {sec:7.3f} s")


if __name__ == "__main__":
    main()
