"""Training one model for one (dataset, method, ε, seed), as in Andriushchenko & Flammarion (2020).

Outputs in ``out_dir`` (each written atomically):
  config.yaml        resolved config of the run
  state.pt           resumable training state (model, optimizer, method state, progress,
                     history, early-stopping best, RNG) — refreshed every epoch and every
                     ``runtime.checkpoint_every`` iterations
  history.csv        one row per evaluation of the monitoring statistics: at initialisation,
                     then every ``monitor.every_iterations`` iterations (the official code's
                     ``eval_iter_freq``) and after the last one, or at every epoch end when 0
  snapshots.npz      per-epoch snapshots: the epoch numbers, and the filters of a single-layer CNN
  model_final.pt     weights after the last iteration
  model_best.pt      early-stopped weights: best PGD accuracy on fixed training points,
                     chosen at every evaluation (the official code does the same)
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
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from fastadv import atomic
from fastadv.training import monitor
from fastadv.attacks.grad import loss_scaling
from fastadv.training.checkpoint import STATE_FORMAT, load_weights_only, save_model
from fastadv.config.params import config_diff
from fastadv.data.datasets import info, load_arrays, load_split
from fastadv.errors import FastAdvError
from fastadv.methods import StepContext, build_method
from fastadv.models import build_model, init_weights
from fastadv.training.runtime import (
    derived_seed, generator, hardware_stamp, in_layout, memory_layout, select_device, set_threads,
)
from fastadv.training.schedule import learning_rate, warmup_factor

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


def make_model(cfg: dict, device) -> torch.nn.Module:
    """The run's model, initialised from the run's seed (He init of the GradAlign code)."""
    d = info(cfg["data"]["dataset"])
    norm = cfg["model"]["normalize"]
    torch.manual_seed(derived_seed(cfg["runtime"]["seed"], "init"))
    model = build_model(cfg["model"]["name"], width=cfg["model"]["width"], num_classes=d.num_classes,
                        in_shape=d.shape, mean=d.mean if norm else None, std=d.std if norm else None)
    if not getattr(model, "own_init", False):  # ResNet-50 keeps torchvision's init (Wong et al.)
        model.apply(init_weights)
    return model.to(device)


def make_optimizer(cfg: dict, model) -> torch.optim.Optimizer:
    o = cfg["optim"]
    if o["name"] == "sgd":
        return torch.optim.SGD(model.parameters(), lr=o["lr_max"], momentum=o["momentum"],
                               weight_decay=o["weight_decay"])
    return torch.optim.Adam(model.parameters(), lr=o["lr_max"], weight_decay=o["weight_decay"])


def mixed_precision(precision: str, device: torch.device):
    """(autocast context, gradient scaler) of ``runtime.precision``: fp16 is the GradAlign code's apex
    O1 (autocast to float16, dynamic loss scaling); bf16 needs no scaling; fp32 disables both."""
    dtype = {"fp16": torch.float16, "bf16": torch.bfloat16}.get(precision)
    autocast = torch.autocast(device.type, dtype=dtype or torch.float32, enabled=dtype is not None)
    return autocast, torch.amp.GradScaler(device.type, enabled=precision == "fp16")


def train_step(model, opt, method, x, y, ctx: StepContext, lr: float, autocast, scaler) -> "StepOutput":  # noqa: F821
    """One optimisation step of ``method`` on a batch (training and ``bench-train`` share it). With fp16
    the loss is scaled, and so are the input gradients the method takes (attacks.grad.loss_scaling)."""
    for g in opt.param_groups:
        g["lr"] = lr
    scale = scaler.get_scale() if scaler.is_enabled() else 1.0
    with autocast, loss_scaling(scale):
        res = method.step(model, x, y, ctx)
    opt.zero_grad(set_to_none=True)
    scaler.scale(res.loss).backward()
    method.after_backward()
    scaler.step(opt)
    scaler.update()
    return res


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


RUNNING = ("loss", "reg", "correct", "n", "delta_norm", "n_delta", "grad_norm", "n_grad")


@dataclass
class TrainProgress:
    """Everything a resumed run needs besides model, optimizer and method state."""

    epoch: int = 0        # the epoch in progress (0: statistics at initialisation only)
    it: int = 0           # iterations done in it
    global_step: int = 0  # iterations done in all
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"acc": -1.0, "epoch": 0, "iteration": 0, "state": None})
    running: dict = field(default_factory=lambda: dict.fromkeys(RUNNING, 0.0))  # since the last evaluation
    snapshots: list = field(default_factory=list)
    train_seconds: float = 0.0

    def state_dict(self) -> dict:
        d = asdict(self)
        d["running"] = {k: float(v) for k, v in self.running.items()}  # one host sync, at save time only
        return d

    def accumulate(self, res, x, y) -> None:
        """Running sums of the training statistics, kept as tensors (no host sync inside a step)."""
        r, n = self.running, len(y)
        r["loss"] = r["loss"] + res.loss.detach() * n
        r["reg"] = r["reg"] + (res.reg * n if res.reg is not None else 0.0)
        r["correct"] = r["correct"] + (res.logits.argmax(1) == y).sum()
        r["n"] += n
        if res.inputs is not None:  # ‖δ‖₂ of the training input after projection (official avg_delta_l2)
            r["delta_norm"] = r["delta_norm"] + (res.inputs.detach() - x).flatten(1).norm(dim=1).sum()
            r["n_delta"] += n
        if res.input_grad is not None:  # ‖∇ₓℓᵢ‖₂ the attack used (official grad_norm_x, per example)
            r["grad_norm"] = r["grad_norm"] + (res.input_grad.detach() * n).flatten(1).norm(dim=1).sum()
            r["n_grad"] += n

    def training_row(self) -> dict:
        r = self.running
        mean = (lambda k, n: float(r[k]) / r[n] if r[n] else float("nan"))
        return {"train_loss": mean("loss", "n"), "train_reg": mean("reg", "n"), "train_acc": mean("correct", "n"),
                "train_delta_norm": mean("delta_norm", "n_delta"), "train_grad_norm": mean("grad_norm", "n_grad")}


class Run:
    """Setup of one run: device, data, model, optimiser, method, schedule, and its progress."""

    def __init__(self, cfg: dict, out: Path):
        self.cfg, self.out = cfg, out
        rt, o, d = cfg["runtime"], cfg["optim"], cfg["data"]
        set_threads(rt["threads"])
        self.device = select_device(rt["device"])
        self.seed = rt["seed"]
        arrays = load_arrays(d["root"], d["dataset"])
        self.train_set = load_split(d["root"], d["dataset"], "train", self.device, d["subset"], d["subset_mode"],
                                    self.seed, augment=d["augment"], arrays=arrays)
        test_points = load_split(d["root"], d["dataset"], "test", self.device, arrays=arrays).head(
            cfg["monitor"]["test_points"])
        train_points = self.train_set.head(cfg["monitor"]["train_points"])
        self.model = make_model(cfg, self.device)
        self.memory_layout = memory_layout(self.model, rt["channels_last"])
        if self.memory_layout["reason"]:
            print(f"runtime.channels_last ignored, training in the default layout: {self.memory_layout['reason']}",
                  file=sys.stderr)
        self.model = self.layout(self.model)  # channels-last: round-off differs from the default; speed: params.yaml
        test_points, train_points = (tuple(self.layout(t) for t in s) for s in (test_points, train_points))
        self.monitor = monitor.Monitor(cfg["monitor"], test_points, train_points)
        self.opt = make_optimizer(cfg, self.model)
        self.method = build_method(cfg["method"], d["dataset"])
        n, bs = len(self.train_set), o["batch_size"]
        if o["drop_last"] and n < bs:
            raise FastAdvError(f"optim.drop_last with {n} training images < batch_size {bs} leaves no batch")
        self.iters_per_epoch = n // bs if o["drop_last"] else math.ceil(n / bs)
        self.total_iters = o["epochs"] * self.iters_per_epoch
        # As the GradAlign code: warm-up over ⌊epochs · N / batch⌋ iterations, counted from 1 at the first step.
        self.warmup_iters = int(o["warmup_epochs"] * n // bs)
        self.autocast, self.scaler = mixed_precision(rt["precision"], self.device)
        self.progress = TrainProgress()
        self.last_finite = _cpu_state(self.model)  # the model as of the last evaluation (or init / resume)
        self.divergence: str | None = None  # why the run diverged, when not a non-finite training loss

    def layout(self, obj):
        """The model or a batch of images in the run's memory layout (labels pass through)."""
        return in_layout(obj, self.memory_layout["channels_last"])

    # -- resume -------------------------------------------------------------------------------------
    def save_state(self) -> None:
        m = self.method.state_dict()
        atomic.save_torch(self.out / "state.pt", {
            "format": STATE_FORMAT, "config": self.cfg, "model": _cpu_state(self.model),
            "optimizer": self.opt.state_dict(), "method": {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in m.items()},
            "scaler": self.scaler.state_dict(), "progress": self.progress.state_dict(), "rng_cpu": torch.get_rng_state()})

    def load_state(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        self.method.load_state_dict({k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in st["method"].items()})
        self.progress = TrainProgress(**st["progress"])
        torch.set_rng_state(st["rng_cpu"])
        self.last_finite = _cpu_state(self.model)

    # -- training -----------------------------------------------------------------------------------
    def batches(self, epoch: int, start: int):
        """(iteration, x, y) of ``epoch`` from iteration ``start`` on: a seeded permutation per epoch,
        augmentation drawn per batch; Free AT replays each batch ``method.replay`` times."""
        bs = self.cfg["optim"]["batch_size"]
        perm = torch.randperm(len(self.train_set), generator=generator(torch.device("cpu"), self.seed, epoch, "perm"))
        perm = perm.to(self.device)
        for it in range(start, self.iters_per_epoch):
            b = it // self.method.replay
            x, y = self.train_set.batch(perm[b * bs:(b + 1) * bs], generator(self.device, self.seed, epoch, b, "augment"))
            yield it, self.layout(x), y

    def evaluation_due(self) -> bool:
        """Evaluate every ``monitor.every_iterations`` iterations and after the last one; with 0, at epoch ends."""
        p, every = self.progress, self.cfg["monitor"]["every_iterations"]
        if every == 0:
            return p.it == self.iters_per_epoch
        return p.global_step % every == 0 or p.global_step == self.total_iters

    def train_epoch(self, sig: _SignalFlag, stop_after: int | None, show: bool) -> bool:
        """Iterations of the epoch in progress; returns False when the run diverged."""
        p, o = self.progress, self.cfg["optim"]
        self.model.train()
        t0 = time.perf_counter()
        bar = tqdm(self.batches(p.epoch, p.it), disable=not show, leave=False, desc=f"epoch {p.epoch}",
                   total=self.iters_per_epoch, initial=p.it)
        for it, x, y in bar:
            ctx = StepContext(generator(self.device, self.seed, p.global_step, "step"),
                              warmup_factor(p.global_step + 1, self.warmup_iters))
            lr = learning_rate(o["lr_schedule"], (p.global_step + 1) / self.total_iters, o["lr_max"], o["lr_peak"])
            res = train_step(self.model, self.opt, self.method, x, y, ctx, lr, self.autocast, self.scaler)
            p.accumulate(res, x, y)
            p.it, p.global_step = it + 1, p.global_step + 1
            if self.evaluation_due():
                p.train_seconds += time.perf_counter() - t0
                if not self.end_of_evaluation():
                    return False
                self.model.train()
                t0 = time.perf_counter()
            stop = sig.signum is not None or (stop_after is not None and p.global_step >= stop_after)
            every = self.cfg["runtime"]["checkpoint_every"]
            if stop or (every and p.global_step % every == 0 and p.it < self.iters_per_epoch):
                p.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_state()
                if stop:
                    raise Preempted(f"stopped at epoch {p.epoch} iteration {p.it}; state saved")
        p.train_seconds += time.perf_counter() - t0
        return True

    def end_of_evaluation(self) -> bool:
        """Statistics on the fixed points (eval mode), CO flags, early-stopping choice, history row.
        Returns False (the run diverged) when the training loss since the last row is not finite."""
        p = self.progress
        row = {"epoch": p.epoch, "iteration": p.global_step, "epochs": p.global_step / self.iters_per_epoch,
               "lr": learning_rate(self.cfg["optim"]["lr_schedule"], p.global_step / self.total_iters,
                                   self.cfg["optim"]["lr_max"], self.cfg["optim"]["lr_peak"]),
               **p.training_row(), "train_seconds": p.train_seconds}
        if p.global_step and not math.isfinite(row["train_loss"]):
            return False
        # fp16: a skipped step halves the loss scale; below 1 the gradients were non-finite even unscaled, step
        # after step, so the weights stopped changing while the loss stays finite (a silent no-op run otherwise)
        if self.scaler.is_enabled() and self.scaler.get_scale() < 1.0:
            self.divergence = (f"fp16 loss scale fell to {self.scaler.get_scale():g}: non-finite gradients at every "
                               f"scale, steps skipped (use runtime.precision fp32 or bf16)")
            return False
        at_epoch_end = p.it in (0, self.iters_per_epoch)
        gen = generator(self.device, self.seed, p.epoch, "monitor", *(() if at_epoch_end else (p.global_step,)))
        row.update(self.monitor.evaluate(self.model, self.method.eps, gen))
        p.history.append(row)
        self.monitor.flag(p.history)
        if row["train_pgd_acc"] > p.best["acc"]:
            p.best = {"acc": row["train_pgd_acc"], "epoch": p.epoch, "iteration": p.global_step,
                      "state": _cpu_state(self.model)}
        p.running = dict.fromkeys(RUNNING, 0.0)
        self.last_finite = _cpu_state(self.model)
        atomic.write_text(self.out / "history.csv", pd.DataFrame(p.history).to_csv(index=False))
        print(self.monitor.describe(row), flush=True)
        return True

    def end_of_epoch(self) -> None:
        """Snapshot (small, per epoch) and resumable state; the next epoch starts."""
        p = self.progress
        p.snapshots.append({"epoch": torch.tensor(p.epoch), **getattr(self.model, "snapshot", dict)()})
        arrays = {k: np.stack([s[k].numpy() for s in p.snapshots]) for k in p.snapshots[0]}

        def write(tmp):
            with open(tmp, "wb") as f:
                np.savez(f, **arrays)

        atomic.write_with(self.out / "snapshots.npz", write)
        p.epoch, p.it = p.epoch + 1, 0
        self.save_state()

    def finalize(self, status: str, reason: str | None) -> dict:
        p = self.progress
        save_model(self.out / "model_final.pt", self.model, self.cfg, "final", p.history[-1]["epoch"])
        best_model = make_model(self.cfg, torch.device("cpu"))
        best_model.load_state_dict(p.best["state"] if p.best["state"] is not None else _cpu_state(self.model))
        save_model(self.out / "model_best.pt", best_model, self.cfg, "best", p.best["epoch"])
        co = [r for r in p.history if r["co"]]
        epochs_done = p.history[-1]["epoch"]
        summary = {
            "status": status, "reason": reason, "config": self.cfg, "epochs_done": epochs_done,
            "iterations_per_epoch": self.iters_per_epoch, "iterations_done": p.history[-1]["iteration"],
            "best_epoch": p.best["epoch"], "best_iteration": p.best["iteration"], "best_train_pgd_acc": p.best["acc"],
            "co_epoch": co[0]["epoch"] if co else None, "co_iteration": co[0]["iteration"] if co else None,
            "train_seconds": p.train_seconds, "seconds_per_epoch": p.train_seconds / max(epochs_done, 1),
            "final": {k: p.history[-1][k] for k in ("test_clean_acc", "test_fgsm_acc", "test_pgd_acc", "grad_alignment")},
            "hardware": hardware_stamp(self.device), "memory_layout": self.memory_layout,
        }
        atomic.write_json(self.out / "summary.json", summary)
        return summary


def _resume_or_start(run: Run, restart_if_changed: bool) -> None:
    state_path = run.out / "state.pt"
    st = load_weights_only(state_path, STATE_FORMAT) if state_path.is_file() else None
    if st is not None:
        diff = config_diff(_comparable(st["config"]), _comparable(run.cfg))
        if diff and not restart_if_changed:
            raise FastAdvError(f"{state_path} was made with a different config ({'; '.join(diff[:3])}); "
                               "use another output directory, delete it, or pass --restart-if-changed")
        if diff:
            print(f"discarding {state_path}: made with a different config ({'; '.join(diff[:3])})", file=sys.stderr)
            state_path.unlink()
            st = None
    if st is not None:
        run.load_state(st)
        print(f"resuming {run.out} at epoch {run.progress.epoch} iteration {run.progress.it}", file=sys.stderr)
    else:
        atomic.write_text(run.out / "config.yaml", yaml.safe_dump(run.cfg, sort_keys=False))


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
    if (out / "summary.json").is_file():
        done = json.loads((out / "summary.json").read_text())
        diff = config_diff(_comparable(done["config"]), _comparable(cfg))
        if not diff:
            return done
        raise FastAdvError(f"{out} holds a finished run with a different config ({'; '.join(diff[:3])}); "
                           "use another output directory")
    run = Run(cfg, out)
    _resume_or_start(run, restart_if_changed)
    p = run.progress
    show = {"auto": sys.stderr.isatty(), "always": True, "never": False}[cfg["runtime"]["progress"]]
    stop_after = None if max_iterations is None else p.global_step + max_iterations
    status, reason = "completed", None
    with _SignalFlag() as sig:
        if p.epoch == 0:  # statistics at initialisation
            run.model.eval()
            run.end_of_evaluation()
            run.end_of_epoch()
        for epoch in tqdm(range(p.epoch, cfg["optim"]["epochs"] + 1), disable=not show, desc="epochs",
                          initial=p.epoch, total=cfg["optim"]["epochs"] + 1):
            if not run.train_epoch(sig, stop_after, show):
                status, reason = "diverged", run.divergence or f"non-finite training loss in epoch {epoch}"
                run.model.load_state_dict(run.last_finite)  # the final model is the last finite one
                break
            run.end_of_epoch()
    return run.finalize(status, reason)
