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
