"""Training one model for one (dataset, method, ε, seed), as in Andriushchenko & Flammarion (2020).

Outputs in ``out_dir`` (each written atomically):
  config.yaml        resolved config of the run
  state.pt           resumable training state (model, optimizer, method state, position,
                     history, early-stopping best, RNG) — refreshed every epoch and every
                     ``runtime.checkpoint_every`` iterations
  history.csv        one row per epoch (0 = at initialisation)
  model_final.pt     weights after the last epoch
  model_best.pt      early-stopped weights: best PGD accuracy on fixed training points
  summary.json       written last: status (completed | diverged), best/CO epochs, seconds, hardware

Rerunning the same command resumes from ``state.pt``; a completed run is not redone.
On SIGTERM/SIGUSR1 (SLURM's pre-emption signals) the run saves its state at the next
iteration and exits with code 75 (EX_TEMPFAIL); rerun it to continue.
"""
from __future__ import annotations

import copy
import json
import math
import signal
import sys
import time
from pathlib import Path

import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from . import atomic, monitor
from .checkpoint import STATE_FORMAT, load_weights_only, save_model
from .config import config_diff
from .data import info, load_arrays, load_split
from .errors import FastAdvError
from .methods import StepContext, build_method
from .models import build_model, init_weights
from .runtime import derived_seed, generator, hardware_stamp, select_device, set_threads
from .schedule import learning_rate, warmup_factor

EXIT_PREEMPTED = 75
# Keys that do not change what is computed: a run may be resumed with other values.
# (data.root is only a location: the data themselves are verified by hash.)
RESUMABLE_KEYS = {("runtime", "progress"), ("runtime", "checkpoint_every"), ("runtime", "threads"), ("data", "root")}


class Preempted(Exception):
    """Raised after the state was saved because a termination signal arrived."""


def _comparable(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    for sec, key in RESUMABLE_KEYS:
        cfg[sec].pop(key, None)
    return cfg


class _SignalFlag:
    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not in the main thread: no graceful pre-emption
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)


def _model(cfg, device):
    d = info(cfg["data"]["dataset"])
    norm = cfg["model"]["normalize"]
    torch.manual_seed(derived_seed(cfg["runtime"]["seed"], "init"))
    model = build_model(cfg["model"]["name"], width=cfg["model"]["width"], num_classes=d.num_classes,
                        in_shape=d.shape, mean=d.mean if norm else None, std=d.std if norm else None)
    if not getattr(model, "own_init", False):  # ResNet-50 keeps torchvision's init (Wong et al.)
        model.apply(init_weights)
    return model.to(device)


def _optimizer(cfg, model):
    o = cfg["optim"]
    if o["name"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o["lr_max"], momentum=o["momentum"],
                               weight_decay=o["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=o["lr_max"], weight_decay=o["weight_decay"])


def _monitor_row(model, cfg, method, test_mon, train_mon, epoch, device) -> dict:
    """Eval-mode statistics on the fixed monitoring points (the paper's n_eval_every_k_iter)."""
    m = cfg["monitor"]
    eps = method.eps
    gen = generator(device, cfg["runtime"]["seed"], epoch, "monitor")
    was_training = model.training
    model.eval()
    xt, yt = test_mon
    xr, yr = train_mon
    bs = m["batch_size"]
    row = {
        "test_clean_acc": monitor.accuracy(model, xt, yt, bs),
        "test_fgsm_acc": monitor.fgsm_accuracy(model, xt, yt, eps, bs),
        "test_pgd_acc": monitor.pgd_accuracy(model, xt, yt, eps, eps / 4, m["pgd_steps"], gen=gen, batch_size=bs),
        "grad_alignment": monitor.gradient_alignment(model, xt, yt, eps, gen=gen, batch_size=bs),
        "train_pgd_acc": monitor.pgd_accuracy(model, xr, yr, eps, eps / 4, m["pgd_steps"], gen=gen, batch_size=bs),
    }
    model.train(was_training)
    return row


def _write_history(out: Path, rows: list[dict]) -> None:
    atomic.write_text(out / "history.csv", pd.DataFrame(rows).to_csv(index=False))


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def train(cfg: dict, out_dir: str | Path, max_iterations: int | None = None,
          restart_if_changed: bool = False) -> dict:
    """Train (or resume, or skip if complete) the run ``cfg`` into ``out_dir``; returns the summary.

    ``max_iterations``: stop (state saved, ``Preempted`` raised) after this many
    iterations of this call — used by tests to simulate an interruption.
    ``restart_if_changed``: discard an interrupted run's ``state.pt`` made with another
    config and start afresh instead of refusing. The workflow sets it: Snakemake has
    already judged the run's outputs stale, and ``state.pt`` is not one of them.
    """
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary_path, state_path = out / "summary.json", out / "state.pt"
    if summary_path.is_file():
        done = json.loads(summary_path.read_text())
        diff = config_diff(_comparable(done["config"]), _comparable(cfg))
        if not diff:
            return done
        raise FastAdvError(f"{out} holds a finished run with a different config ({'; '.join(diff[:3])}); "
                           "use another output directory")

    rt, o = cfg["runtime"], cfg["optim"]
    set_threads(rt["threads"])
    device = select_device(rt["device"])
    if rt["precision"] == "bf16" and device.type != "cuda":
        raise FastAdvError("runtime.precision 'bf16' needs a CUDA device; valid on CPU: fp32")
    dataset, seed = cfg["data"]["dataset"], rt["seed"]

    arrays = load_arrays(cfg["data"]["root"], dataset)
    d = cfg["data"]
    train_set = load_split(d["root"], dataset, "train", device, d["subset"], d["subset_mode"], seed,
                           augment=d["augment"], arrays=arrays)
    test_mon = load_split(d["root"], dataset, "test", device, arrays=arrays).head(cfg["monitor"]["test_points"])
    train_mon = train_set.head(cfg["monitor"]["train_points"])
    del arrays

    model = _model(cfg, device)
    opt = _optimizer(cfg, model)
    method = build_method(cfg["method"], dataset)
    n, bs = len(train_set), o["batch_size"]
    iters_per_epoch = math.ceil(n / bs)
    total_iters = o["epochs"] * iters_per_epoch
    warmup_iters = int(round(o["warmup_epochs"] * iters_per_epoch))

    # Position and accumulated results; overwritten by a saved state when resuming.
    pos = {"epoch": 0, "it": 0, "global_step": 0}
    history: list[dict] = []
    best = {"acc": -1.0, "epoch": 0, "state": None}
    acc = {"loss": 0.0, "reg": 0.0, "correct": 0, "n": 0}
    train_seconds = 0.0
    st = load_weights_only(state_path, STATE_FORMAT) if state_path.is_file() else None
    if st is not None:
        diff = config_diff(_comparable(st["config"]), _comparable(cfg))
        if diff and not restart_if_changed:
            raise FastAdvError(f"{state_path} was made with a different config ({'; '.join(diff[:3])}); "
                               "use another output directory, delete it, or pass --restart-if-changed")
        if diff:
            print(f"discarding {state_path}: made with a different config ({'; '.join(diff[:3])})",
                  file=sys.stderr)
            state_path.unlink()
            st = None
    if st is not None:
        model.load_state_dict(st["model"])
        opt.load_state_dict(st["optimizer"])
        method.load_state_dict({k: (v.to(device) if torch.is_tensor(v) else v) for k, v in st["method"].items()})
        pos, history, best, acc = st["pos"], st["history"], st["best"], st["acc"]
        train_seconds = st["train_seconds"]
        torch.set_rng_state(st["rng_cpu"])
        print(f"resuming {out} at epoch {pos['epoch']} iteration {pos['it']}", file=sys.stderr)
    else:
        atomic.write_text(out / "config.yaml", yaml.safe_dump(cfg, sort_keys=False))
    last_finite = _cpu_state(model)  # the model as of the last finished epoch (or init / resume point)

    def save_state():
        atomic.save_torch(state_path, {
            "format": STATE_FORMAT, "config": cfg, "model": _cpu_state(model), "optimizer": opt.state_dict(),
            "method": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in method.state_dict().items()},
            "pos": pos, "history": history, "best": best, "acc": acc, "train_seconds": train_seconds,
            "rng_cpu": torch.get_rng_state(),
        })

    show = {"auto": sys.stderr.isatty(), "always": True, "never": False}[rt["progress"]]
    status, reason = "completed", None
    autocast = torch.autocast("cuda", dtype=torch.bfloat16, enabled=rt["precision"] == "bf16")
    calls = 0
    with _SignalFlag() as sig:
        epochs = tqdm(range(pos["epoch"], o["epochs"] + 1), disable=not show, desc="epochs", initial=pos["epoch"],
                      total=o["epochs"] + 1)
        for epoch in epochs:
            if epoch > 0:  # epoch 0: statistics at initialisation only
                perm = torch.randperm(n, generator=generator(torch.device("cpu"), seed, epoch, "perm")).to(device)
                model.train()
                t0 = time.perf_counter()
                bar = tqdm(range(pos["it"], iters_per_epoch), disable=not show, leave=False, desc=f"epoch {epoch}")
                for it in bar:
                    b = it // method.replay  # Free AT: each fresh batch is replayed m times
                    idx = perm[b * bs:(b + 1) * bs]
                    x, y = train_set.batch(idx, generator(device, seed, epoch, b, "augment"))
                    ctx = StepContext(generator(device, seed, pos["global_step"], "step"),
                                      warmup_factor(pos["global_step"], warmup_iters))
                    lr = learning_rate(o["lr_schedule"], (pos["global_step"] + 1) / total_iters, o["lr_max"])
                    for g in opt.param_groups:
                        g["lr"] = lr
                    with autocast:
                        res = method.step(model, x, y, ctx)
                    opt.zero_grad(set_to_none=True)
                    res.loss.backward()
                    method.after_backward()
                    opt.step()
                    # Accumulate as tensors: no host sync inside the step.
                    acc["loss"] = acc["loss"] + res.loss.detach() * len(y)
                    acc["reg"] = acc["reg"] + (res.reg * len(y) if res.reg is not None else 0.0)
                    acc["correct"] = acc["correct"] + (res.logits.argmax(1) == y).sum()
                    acc["n"] += len(y)
                    pos["it"], pos["global_step"] = it + 1, pos["global_step"] + 1
                    calls += 1
                    every = rt["checkpoint_every"]
                    stop = sig.signum is not None or (max_iterations is not None and calls >= max_iterations)
                    if stop or (every and pos["global_step"] % every == 0 and pos["it"] < iters_per_epoch):
                        train_seconds += time.perf_counter() - t0
                        t0 = time.perf_counter()
                        acc = {k: (float(v) if torch.is_tensor(v) else v) for k, v in acc.items()}
                        save_state()
                        if stop:
                            raise Preempted(f"stopped at epoch {epoch} iteration {pos['it']}; state saved")
                train_seconds += time.perf_counter() - t0
            n_seen = max(acc["n"], 1)
            row = {"epoch": epoch, "iteration": pos["global_step"],
                   "lr": learning_rate(o["lr_schedule"], pos["global_step"] / total_iters, o["lr_max"]),
                   "train_loss": float(acc["loss"]) / n_seen if epoch else float("nan"),
                   "train_reg": float(acc["reg"]) / n_seen if epoch else float("nan"),
                   "train_acc": float(acc["correct"]) / n_seen if epoch else float("nan"),
                   "train_seconds": train_seconds}
            if epoch and not math.isfinite(row["train_loss"]):
                status, reason = "diverged", f"non-finite training loss in epoch {epoch}"
                # The final model of a diverged run is the last one with a finite epoch.
                model.load_state_dict(last_finite)
                break
            row.update(_monitor_row(model, cfg, method, test_mon, train_mon, epoch, device))
            history.append(row)
            flags = monitor.flag_co([r["test_pgd_acc"] for r in history], [r["test_fgsm_acc"] for r in history],
                                    cfg["monitor"]["co_pgd_ratio"], cfg["monitor"]["co_min_gap"])
            for r, f in zip(history, flags):
                r["co"] = bool(f)
            if row["train_pgd_acc"] > best["acc"]:
                best = {"acc": row["train_pgd_acc"], "epoch": epoch, "state": _cpu_state(model)}
            print(f"epoch {epoch:3d} lr {row['lr']:.4f} loss {row['train_loss']:.4f} acc {row['train_acc']:.3f} | "
                  f"test clean {row['test_clean_acc']:.3f} fgsm {row['test_fgsm_acc']:.3f} "
                  f"pgd {row['test_pgd_acc']:.3f} align {row['grad_alignment']:.3f}"
                  f"{' CO' if history[-1]['co'] else ''} | {train_seconds:.1f}s", flush=True)
            pos = {"epoch": epoch + 1, "it": 0, "global_step": pos["global_step"]}
            acc = {"loss": 0.0, "reg": 0.0, "correct": 0, "n": 0}
            _write_history(out, history)
            save_state()
            last_finite = _cpu_state(model)

    _write_history(out, history)
    save_model(out / "model_final.pt", model, cfg, "final", len(history) - 1)
    best_model = _model(cfg, torch.device("cpu"))
    best_model.load_state_dict(best["state"] if best["state"] is not None else _cpu_state(model))
    save_model(out / "model_best.pt", best_model, cfg, "best", best["epoch"])
    co_epochs = [r["epoch"] for r in history if r["co"]]
    summary = {
        "status": status, "reason": reason, "config": cfg, "epochs_done": len(history) - 1,
        "best_epoch": best["epoch"], "best_train_pgd_acc": best["acc"],
        "co_epoch": co_epochs[0] if co_epochs else None, "train_seconds": train_seconds,
        "seconds_per_epoch": train_seconds / max(len(history) - 1, 1),
        "final": {k: history[-1][k] for k in ("test_clean_acc", "test_fgsm_acc", "test_pgd_acc", "grad_alignment")},
        "hardware": hardware_stamp(device),
    }
    atomic.write_json(summary_path, summary)
    return summary
