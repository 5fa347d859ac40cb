"""Benchmarks: commands that print timings and ratios (never timed tests).

Every timing is repeated ``repeats`` times, the contenders interleaved (A B A B …), and reported as
the median with its min and max; a ratio is taken within each repeat (the two timings share the
machine's load at that moment) and summarised the same way. That keeps a ratio trustworthy on a
shared machine where a single run can move by ± 15 %.
"""
from __future__ import annotations

import statistics
import time
from pathlib import Path

import pandas as pd

from fastadv.attacks import pgd_attack
from fastadv.config.run_config import TrainConfig, as_train_config
from fastadv.errors import unknown_choice
from fastadv.training.checkpoint import load_model, training_config
from fastadv.data.datasets import load_split
from fastadv.evaluation.protocol import PROTOCOLS
from fastadv.training.runtime import generator, hardware_stamp, select_device, set_threads
from fastadv.units import eps_absolute


def _sync(device) -> None:
    if device.type == "cuda":
        import torch

        torch.cuda.synchronize()


def interleaved(contenders: dict, repeats: int, device) -> dict[str, list[float]]:
    """Seconds of each zero-argument callable in ``contenders``, ``repeats`` times, interleaved."""
    seconds = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, run in contenders.items():
            _sync(device)
            t = time.perf_counter()
            run()
            _sync(device)
            seconds[name].append(time.perf_counter() - t)
    return seconds


def spread(values: list[float]) -> dict:
    return {"median": statistics.median(values), "min": min(values), "max": max(values)}


def _append_csv(path: str | None, rows: list[dict]) -> None:
    if not path:
        return
    from fastadv import atomic

    p = Path(path)
    df = pd.concat([pd.read_csv(p), pd.DataFrame(rows)]) if p.is_file() else pd.DataFrame(rows)
    atomic.write_text(p, df.to_csv(index=False))


def bench_eval(model_path, n_points: int = 256, batch_size: int = 1024, threads: int = 0, repeats: int = 3,
               csv_out: str | None = None, data_root: str | None = None) -> dict:
    """PGD-50-10 on the same model and points with and without skipping broken points."""
    set_threads(threads)
    device = select_device("auto")
    cfg = training_config(model_path)
    model = load_model(model_path, device)
    x, y = load_split(data_root or cfg["data"]["root"], cfg["data"]["dataset"], "test", device).head(n_points)
    eps = eps_absolute(cfg["method"]["eps"])
    steps, restarts, alpha = PROTOCOLS["pgd50_10"]
    acc = {}

    def attack(skip: bool):
        def run():
            correct = 0
            for b, i in enumerate(range(0, len(y), batch_size)):
                xs, ys = x[i:i + batch_size], y[i:i + batch_size]
                x_adv = pgd_attack(model, xs, ys, eps, alpha(eps), steps, restarts, skip_broken=skip,
                                   gen=generator(device, 0, "pgd", b))
                correct += int((model(x_adv).argmax(1) == ys).sum())
            acc[skip] = correct / len(y)
        return run

    s = interleaved({"skip": attack(True), "noskip": attack(False)}, repeats, device)
    ratios = [b / a for a, b in zip(s["skip"], s["noskip"])]
    hw = hardware_stamp(device)
    row = {"model": str(model_path), "n_points": len(y), "repeats": repeats,
           **{f"seconds_skip_{k}": v for k, v in spread(s["skip"]).items()},
           **{f"seconds_noskip_{k}": v for k, v in spread(s["noskip"]).items()},
           **{f"speedup_{k}": v for k, v in spread(ratios).items()},
           "acc_skip": acc[True], "acc_noskip": acc[False], "device": hw["gpu"] or hw["cpu"],
           "threads": hw["torch_threads"], "torch": hw["torch"]}
    print(f"PGD-50-10 on {len(y)} points ({row['device']}, {row['threads']} threads, torch {row['torch']}), "
          f"median [min, max] of {repeats} interleaved repeats:")
    for k in ("skip", "noskip"):
        print(f"  {'skip broken' if k == 'skip' else 'no skip':<12} {row[f'seconds_{k}_median']:.2f} s "
              f"[{row[f'seconds_{k}_min']:.2f}, {row[f'seconds_{k}_max']:.2f}]  acc {row[f'acc_{k}']:.4f}")
    print(f"  speed-up {row['speedup_median']:.2f}x [{row['speedup_min']:.2f}, {row['speedup_max']:.2f}], "
          f"identical accuracy: {row['acc_skip'] == row['acc_noskip']}")
    _append_csv(csv_out, [row])
    return row


def random_batch(n: int, seed: int = 0):
    """``n`` random CIFAR-sized images (3×32×32 in [0,1]) and labels of 10 classes: a step's time does not depend on
    the pixels, so the probes and step benchmarks need no dataset."""
    import torch

    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, 3, 32, 32, generator=gen), torch.randint(0, 10, (n,), generator=gen)


def step_runner(cfg: TrainConfig, name: str | None, x, y, iterations: int, warmup: int, device, wrap=None):
    """A callable doing ``iterations`` training steps of method ``name`` (``cfg``'s own when None) on the batch
    ``(x, y)`` (after ``warmup`` untimed ones); ``wrap`` (e.g. ``torch.compile``) is applied to the model the
    steps call, after its layout."""
    import torch

    from fastadv.methods import StepContext, build_method
    from fastadv.training.runtime import double_backward_path, in_layout, memory_layout
    from fastadv.training.step import make_model, make_optimizer, mixed_precision, train_step

    run = cfg if name is None else cfg.replace(method={"name": name})
    model, method = make_model(run, device), build_method(run.method, run.data.dataset)
    channels_last = memory_layout(model, run.runtime.channels_last)["channels_last"]  # as training.loop.Run
    model = in_layout(model, channels_last)
    opt = make_optimizer(run, model)
    autocast, scaler = mixed_precision(run.runtime.precision, device)
    graph = double_backward_path(run.runtime.double_backward, device, run.runtime.precision)["used"]  # as Run
    model.train()
    model = model if wrap is None else wrap(model)
    gen = torch.Generator(device=device).manual_seed(0)
    x = in_layout(x, channels_last)

    def steps(n=iterations):
        for _ in range(n):
            train_step(model, opt, method, x, y, StepContext(gen), run.optim.lr_max, autocast, scaler,
                       double_backward=graph)

    steps(warmup)
    steps.channels_last, steps.double_backward = channels_last, graph  # reported beside the timing
    return steps


LAYOUTS = ("trained", "default")  # bench-train --layout: as each method's config trains it | default, native


def _print_steps(rows: list[dict], layout: str, repeats: int, iterations: int) -> None:
    r0, how = rows[0], "as its config trains it" if layout == "trained" else "in the default layout"
    print(f"training step, {r0['model']}, batch {r0['batch_size']}, {r0['device']}, {r0['threads']} threads, "
          f"torch {r0['torch']}, each method {how}; median [min, max] of {repeats} interleaved repeats of "
          f"{iterations} steps:")
    for r in rows:
        print(f"  {r['method']:<13} {r['samples_per_s']:9.1f} samples/s  {r['seconds_per_epoch']:8.1f} s/epoch  "
              f"{r['ratio_to_fgsm']:.2f}x FGSM [{r['ratio_min']:.2f}, {r['ratio_max']:.2f}]  "
              f"{'channels-last' if r['channels_last'] else 'default layout'}, {r['double_backward']} double backward")


def bench_train(cfg: TrainConfig | dict, methods: list[str], iterations: int = 20, warmup: int = 3,
                repeats: int = 3, csv_out: str | None = None, configs: dict | None = None,
                layout: str = "trained") -> list[dict]:
    """Seconds per training iteration of each method on the same model, batch and process (attack +
    forward/backward + update, through the training loop's own ``train_step``; no monitoring): samples/s,
    the implied seconds per epoch of ``cfg``'s data, and the ratio to FGSM (the first method when FGSM is
    absent), each as the median [min, max] of ``repeats`` interleaved repeats.

    ``configs`` maps a method label to the whole config it trains with (a scale's variant: its memory layout and
    double backward, e.g. the quick scale's fused GradAlign); a label without one runs ``cfg`` with
    ``method.name`` = the label. ``layout="default"`` times every method in the default layout with the native
    double backward instead. Each row says which layout and double backward it ran in."""
    import torch

    if layout not in LAYOUTS:
        raise unknown_choice("layout", layout, LAYOUTS)
    cfg = as_train_config(cfg)
    plain = {"runtime": {"channels_last": False, "double_backward": "native"}} if layout == "default" else {}
    runs = {m: as_train_config((configs or {}).get(m) or cfg.replace(method={"name": m})).replace(**plain)
            for m in methods}
    set_threads(cfg.runtime.threads)
    device = select_device(cfg.runtime.device)
    d, bs = cfg.data, cfg.phases[0].batch_size
    train_set = load_split(d.root, d.dataset, "train", device, d.subset, d.subset_mode, cfg.runtime.seed,
                           augment=d.augment)
    idx = torch.arange(min(bs, len(train_set)), device=device)
    x, y = train_set.batch(idx, torch.Generator(device=device).manual_seed(0))
    runners = {m: step_runner(runs[m], None, x, y, iterations, warmup, device) for m in methods}
    seconds = {m: [s / iterations for s in v] for m, v in interleaved(runners, repeats, device).items()}
    base = "fgsm" if "fgsm" in methods else methods[0]
    hw = hardware_stamp(device)
    rows = []
    for m in methods:
        per_it = spread(seconds[m])
        ratio = spread([a / b for a, b in zip(seconds[m], seconds[base])])
        rows.append({"method": m, "method_name": runs[m].method.name,
                     "seconds_per_iteration": per_it["median"], "seconds_min": per_it["min"],
                     "seconds_max": per_it["max"], "samples_per_s": len(idx) / per_it["median"],
                     "seconds_per_epoch": per_it["median"] * -(-len(train_set) // bs), "ratio_to_fgsm": ratio["median"],
                     "ratio_min": ratio["min"], "ratio_max": ratio["max"], "repeats": repeats,
                     "model": f"{cfg.model.name}-w{cfg.model.width}", "batch_size": len(idx),
                     "channels_last": runners[m].channels_last, "double_backward": runners[m].double_backward,
                     "device": hw["gpu"] or hw["cpu"], "threads": hw["torch_threads"], "torch": hw["torch"]})
    _print_steps(rows, layout, repeats, iterations)
    _append_csv(csv_out, rows)
    return rows


def scale_configs(study, methods: list[str], experiment: str | None = None, eps: float | None = None,
                  seed: int | None = None, sets: list[str] = ()) -> dict:
    """Each of ``methods`` that is a variant label of the study, resolved as its scale trains it (the variant's
    memory layout and double backward): ``bench_train``'s ``configs``."""
    return {m: study.train_config(experiment, m, eps, seed, sets) for m in methods if m in study.doc["variants"]}
