"""Benchmarks (commands that print ratios; never timed tests)."""
from __future__ import annotations

import time
from pathlib import Path

import pandas as pd

from .attacks import pgd_attack
from .checkpoint import load_model, load_model_record
from .data import load_split
from .evaluate import PROTOCOLS
from .runtime import generator, hardware_stamp, select_device, set_threads


def bench_eval(model_path, n_points: int = 256, batch_size: int = 1024, threads: int = 0,
               csv_out: str | None = None, data_root: str | None = None) -> dict:
    """PGD-50-10 on the same model and points with and without skipping broken points."""
    set_threads(threads)
    device = select_device("auto")
    rec = load_model_record(model_path)
    model = load_model(model_path, device)
    cfg = rec["config"]
    x, y = load_split(data_root or cfg["data"]["root"], cfg["data"]["dataset"], "test", device).head(n_points)
    eps = cfg["method"]["eps"] / 255
    steps, restarts, alpha = PROTOCOLS["pgd50_10"]
    out = {}
    for skip in (True, False):
        t = time.perf_counter()
        correct = 0
        for b, i in enumerate(range(0, len(y), batch_size)):
            x_adv = pgd_attack(model, x[i:i + batch_size], y[i:i + batch_size], eps, alpha(eps), steps, restarts,
                               skip_broken=skip, gen=generator(device, 0, "pgd", b))
            correct += int((model(x_adv).argmax(1) == y[i:i + batch_size]).sum())
        if device.type == "cuda":
            import torch
            torch.cuda.synchronize()
        out["skip" if skip else "noskip"] = {"seconds": time.perf_counter() - t, "acc": correct / len(y)}
    hw = hardware_stamp(device)
    row = {"model": str(model_path), "n_points": len(y), "seconds_skip": out["skip"]["seconds"],
           "seconds_noskip": out["noskip"]["seconds"], "speedup": out["noskip"]["seconds"] / out["skip"]["seconds"],
           "acc_skip": out["skip"]["acc"], "acc_noskip": out["noskip"]["acc"],
           "points_per_s_skip": len(y) / out["skip"]["seconds"], "device": hw["gpu"] or hw["cpu"],
           "threads": hw["torch_threads"], "torch": hw["torch"]}
    print(f"PGD-50-10 on {len(y)} points ({row['device']}, {row['threads']} threads, torch {row['torch']}):")
    print(f"  skip broken: {row['seconds_skip']:.2f} s  acc {row['acc_skip']:.4f}")
    print(f"  no skip:     {row['seconds_noskip']:.2f} s  acc {row['acc_noskip']:.4f}")
    print(f"  speed-up {row['speedup']:.2f}x, identical accuracy: {row['acc_skip'] == row['acc_noskip']}")
    if csv_out:
        from . import atomic

        p = Path(csv_out)
        df = pd.concat([pd.read_csv(p), pd.DataFrame([row])]) if p.is_file() else pd.DataFrame([row])
        atomic.write_text(p, df.to_csv(index=False))
    return row


def bench_train(cfg: dict, methods: list[str], iterations: int = 20, warmup: int = 3,
                csv_out: str | None = None) -> list[dict]:
    """Seconds per training iteration of each method on the same model, data and process.

    Prints samples/s, the implied seconds per epoch of ``cfg``'s data, and the ratio to
    FGSM (the first method when FGSM is absent). Timing covers the optimisation step
    only (attack + forward/backward + update), not monitoring.
    """
    import copy

    import torch

    from .data import load_split
    from .methods import StepContext, build_method
    from .train import make_model, make_optimizer, mixed_precision, train_step

    set_threads(cfg["runtime"]["threads"])
    device = select_device(cfg["runtime"]["device"])
    d, o = cfg["data"], cfg["optim"]
    train_set = load_split(d["root"], d["dataset"], "train", device, d["subset"], d["subset_mode"],
                           cfg["runtime"]["seed"], augment=d["augment"])
    bs = o["batch_size"]
    idx = torch.arange(min(bs, len(train_set)), device=device)
    autocast, scaler = mixed_precision(cfg["runtime"]["precision"], device)
    rows = []
    for name in methods:
        run = copy.deepcopy(cfg)
        run["method"]["name"] = name
        model, method = make_model(run, device), build_method(run["method"], d["dataset"])
        opt = make_optimizer(run, model)
        model.train()
        gen = torch.Generator(device=device).manual_seed(0)
        x, y = train_set.batch(idx, gen)
        for i in range(warmup + iterations):
            if i == warmup:
                if device.type == "cuda":
                    torch.cuda.synchronize()
                t = time.perf_counter()
            train_step(model, opt, method, x, y, StepContext(gen), o["lr_max"], autocast, scaler)
        if device.type == "cuda":
            torch.cuda.synchronize()
        per_it = (time.perf_counter() - t) / iterations
        rows.append({"method": name, "seconds_per_iteration": per_it, "samples_per_s": len(idx) / per_it,
                     "seconds_per_epoch": per_it * -(-len(train_set) // bs)})
    base = next((r for r in rows if r["method"] == "fgsm"), rows[0])
    hw = hardware_stamp(device)
    for r in rows:
        r.update(ratio_to_fgsm=r["seconds_per_iteration"] / base["seconds_per_iteration"],
                 model=f"{cfg['model']['name']}-w{cfg['model']['width']}", batch_size=len(idx),
                 device=hw["gpu"] or hw["cpu"], threads=hw["torch_threads"], torch=hw["torch"])
    print(f"training step, {rows[0]['model']}, batch {len(idx)}, {rows[0]['device']}, "
          f"{rows[0]['threads']} threads, torch {rows[0]['torch']}:")
    for r in rows:
        print(f"  {r['method']:<13} {r['samples_per_s']:9.1f} samples/s  {r['seconds_per_epoch']:8.1f} s/epoch  "
              f"{r['ratio_to_fgsm']:.2f}x FGSM")
    if csv_out:
        from . import atomic

        p = Path(csv_out)
        df = pd.concat([pd.read_csv(p), pd.DataFrame(rows)]) if p.is_file() else pd.DataFrame(rows)
        atomic.write_text(p, df.to_csv(index=False))
    return rows
