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
  model_best.pt      early-stopped weights, chosen at every evaluation by monitor.best_by: best PGD accuracy
                     on fixed training points (the official code's) or best clean test accuracy (Wong et al.'s)
  summary.json       written last: status (completed | not_learned | diverged), best/CO epochs, seconds, hardware

Rerunning the same command resumes from ``state.pt``; a completed run is not redone.
On SIGTERM/SIGUSR1 (SLURM's pre-emption signals) the run saves its state at the next
iteration and exits with code 75 (EX_TEMPFAIL); rerun it to continue.
"""
from __future__ import annotations

import copy
import hashlib
import json
from contextlib import nullcontext
import math
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
import yaml
from tqdm.auto import tqdm

from fastadv import atomic
from fastadv.shard import batch_shard
from fastadv.training import distributed, monitor
from fastadv.training.tracking import Tracker
from fastadv.training.checkpoint import STATE_FORMAT, load_weights_only, save_model
from fastadv.config.params import config_diff
from fastadv.config.run_config import Phase, TrainConfig, as_train_config
from fastadv.data.datasets import load_arrays, load_split
from fastadv.errors import FastAdvError
from fastadv.methods import StepContext, build_method
from fastadv.training.plan import Plan
from fastadv.training.preemption import Preempted, SignalFlag
from fastadv.training.progress import RUNNING, TrainProgress
from fastadv.training.runtime import (
    double_backward_path, generator, hardware_stamp, in_layout, memory_layout, say_ignored, select_device,
    set_threads,
)
from fastadv.training.schedule import warmup_factor
from fastadv.training.step import make_model, make_optimizer, mixed_precision, train_step

# Keys that do not change what is computed: a run may be resumed with other values.
# (data.root is only a location: the data themselves are verified by hash.)
RESUMABLE_KEYS = {("runtime", "progress"), ("runtime", "checkpoint_every"), ("runtime", "threads"), ("data", "root"),
                  ("runtime", "dist_timeout_s"), ("runtime", "dvclive"), ("runtime", "loader_workers")}


def _comparable(cfg: dict) -> dict:
    cfg = copy.deepcopy(cfg)
    for sec, key in RESUMABLE_KEYS:
        cfg[sec].pop(key, None)
    return cfg


# A run's status when it trained to the end: not_learned where its clean accuracy never rose clearly above chance
# and no evaluation was flagged as CO (fastadv.training.co_rule.run_learned); the other status is diverged.
FINISHED = ("completed", "not_learned")


def _cpu_tensors(state: dict) -> dict:
    """A method's state with its tensors on the CPU (per rank: FGSM's carried noise holds the rank's rows)."""
    return {k: (v.cpu() if torch.is_tensor(v) else v) for k, v in state.items()}


def _cpu_state(model) -> dict:
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


def load_data(cfg: TrainConfig, device, phase: Phase) -> tuple:
    """(training set, the monitor's fixed test points, its fixed training points) of the run in ``phase``: an
    image folder's copies resized for it, cropped to its size (the test points centre-cropped, as Wong et al.
    validate each phase)."""
    d = cfg.data
    arrays = load_arrays(d.root, d.dataset)
    view = {"images": phase.images, "crop": phase.crop}
    train_set = load_split(d.root, d.dataset, "train", device, d.subset, d.subset_mode, cfg.runtime.seed,
                           augment=d.augment, arrays=arrays, workers=cfg.runtime.loader_workers, **view)
    test_points = load_split(d.root, d.dataset, "test", device, arrays=arrays, **view).head(cfg.monitor.test_points)
    return train_set, test_points, train_set.head(cfg.monitor.train_points)


class Run:
    """One run: device, data, model, optimiser, method, schedule, its progress, and its training epochs."""

    def __init__(self, cfg: TrainConfig, out: Path):
        self.cfg, self.out, self.seed = cfg, out, cfg.runtime.seed
        set_threads(cfg.runtime.threads)
        self.group, self.device = distributed.join(cfg.runtime.device, cfg.runtime.dist_timeout_s, select_device)
        distributed.check_data_parallel(cfg, self.group)
        self.model = make_model(cfg, self.device)
        self.memory_layout = memory_layout(self.model, cfg.runtime.channels_last)
        self.double_backward = double_backward_path(cfg.runtime.double_backward, self.device, cfg.runtime.precision)
        if self.group.main:
            say_ignored(self.memory_layout, self.double_backward)
        self.model, self.trainer = distributed.wrap(  # the trainer: DDP on several ranks (channels-last: params.yaml)
            self.layout(self.model), self.group, cfg.runtime.sync_batchnorm, self.device)
        self.phase = None
        self.enter_phase(cfg.phases[0])
        self.opt = make_optimizer(cfg, self.model)
        self.method = build_method(cfg.method, cfg.data.dataset)
        self.plan = Plan(cfg, len(self.train_set), self.group.world)
        self.autocast, self.scaler = mixed_precision(cfg.runtime.precision, self.device)
        self.progress = TrainProgress()
        self.last_finite = _cpu_state(self.model)  # the model as of the last evaluation (or init / resume)
        self.divergence: str | None = None  # why the run diverged, when not a non-finite training loss
        self.tracker = Tracker(out, False)  # DVCLive, once the run writes (runtime.dvclive)

    def layout(self, obj):
        """The model or a batch of images in the run's memory layout (labels pass through)."""
        return in_layout(obj, self.memory_layout["channels_last"])

    def enter_phase(self, phase: Phase) -> None:
        """The data and monitored points of ``phase`` (read again only when the phase changes)."""
        if phase == self.phase:
            return
        self.train_set, test_points, train_points = load_data(self.cfg, self.device, phase)
        test_points, train_points = (tuple(self.layout(t) for t in s) for s in (test_points, train_points))
        self.monitor = monitor.Monitor(self.cfg.monitor, test_points, train_points)
        self.phase = phase

    # -- resume -------------------------------------------------------------------------------------
    def save_state(self) -> None:
        """``state.pt`` (rank 0; every rank calls it: the running statistics are gathered first)."""
        self.progress.gather(self.group, self.device)
        methods = distributed.every_rank(_cpu_tensors(self.method.state_dict()), self.group)  # a rank's shard's
        if not self.group.main:
            return
        atomic.save_torch(self.out / "state.pt", {
            "format": STATE_FORMAT, "config": self.cfg.to_dict(), "world_size": self.group.world,
            "model": _cpu_state(self.model),
            "optimizer": self.opt.state_dict(), "method": methods,
            "scaler": self.scaler.state_dict(), "progress": self.progress.state_dict(), "rng_cpu": torch.get_rng_state()})

    def load_state(self, st: dict) -> None:
        self.model.load_state_dict(st["model"])
        self.opt.load_state_dict(st["optimizer"])
        self.scaler.load_state_dict(st["scaler"])
        m = st["method"][self.group.rank] if isinstance(st["method"], list) else st["method"]  # a dict: one rank's
        self.method.load_state_dict({k: (v.to(self.device) if torch.is_tensor(v) else v) for k, v in m.items()})
        self.progress = TrainProgress(**st["progress"])
        if not self.group.main:  # the saved running sums are the global ones (gather): rank 0 carries them
            self.progress.running = dict.fromkeys(RUNNING, 0.0)
        torch.set_rng_state(st["rng_cpu"])
        self.last_finite = _cpu_state(self.model)

    # -- training -----------------------------------------------------------------------------------
    def batches(self, epoch: int, start: int):
        """(iteration, x, y, (offset, size of the global batch)) of ``epoch`` from iteration ``start`` on: a seeded
        permutation per epoch, augmentation drawn per batch, this rank's shard of it (all of it alone); Free AT
        replays each batch ``method.replay`` times."""
        bs, draws_on = self.phase.batch_size, self.train_set.generator_device
        perm = torch.randperm(len(self.train_set), generator=generator(torch.device("cpu"), self.seed, epoch, "perm"))
        perm = perm.to(self.device)
        its = range(start, self.plan.iterations(epoch))
        plan = ((perm[b * bs:(b + 1) * bs], generator(draws_on, self.seed, epoch, b, "augment"))
                for b in (it // self.method.replay for it in its))
        for it, (x, y, bounds) in zip(its, self.train_set.iterate(plan, (self.group.rank, self.group.world))):
            yield it, self.layout(x), y, bounds

    def evaluation_due(self) -> bool:
        """Evaluate every ``monitor.every_iterations`` iterations and after the last one; with 0, at epoch ends."""
        p, every = self.progress, self.cfg.monitor.every_iterations
        if every == 0:
            return p.it == self.plan.iterations(p.epoch)
        return p.global_step % every == 0 or p.global_step == self.plan.total_iters

    def train_epoch(self, sig: SignalFlag, stop_after: int | None, show: bool) -> bool:
        """Iterations of the epoch in progress; returns False when the run diverged."""
        p, every = self.progress, self.cfg.runtime.checkpoint_every
        self.enter_phase(self.cfg.phase(p.epoch))
        self.model.train()
        t0 = time.perf_counter()
        bar = tqdm(self.batches(p.epoch, p.it), disable=not show, leave=False, desc=f"epoch {p.epoch}",
                   total=self.plan.iterations(p.epoch), initial=p.it)
        for it, x, y, (off, total) in bar:
            ctx = StepContext(generator(self.device, self.seed, p.global_step, "step"),
                              warmup_factor(p.global_step + 1, self.plan.warmup_iters))
            with batch_shard(off, total) if self.group.active else nullcontext():
                res = train_step(self.trainer, self.opt, self.method, x, y, ctx, self.plan.lr(p.global_step + 1),
                                 self.autocast, self.scaler, len(y) * self.group.world / total,
                                 self.double_backward["used"])
            p.accumulate(res, x, y)
            p.it, p.global_step = it + 1, p.global_step + 1
            if self.evaluation_due():
                p.train_seconds += time.perf_counter() - t0
                if not record_evaluation(self):
                    return False
                self.model.train()
                t0 = time.perf_counter()
            stop = distributed.any_rank(sig.signum is not None or (stop_after is not None and p.global_step >= stop_after),
                                        self.group, self.device)
            if stop or (every and p.global_step % every == 0 and p.it < self.plan.iterations(p.epoch)):
                p.train_seconds += time.perf_counter() - t0
                t0 = time.perf_counter()
                self.save_state()
                if stop:
                    distributed.barrier(self.group)  # every rank exits after rank 0 has saved
                    raise Preempted(f"stopped at epoch {p.epoch} iteration {p.it}; state saved")
        p.train_seconds += time.perf_counter() - t0
        return True


# -- what a run writes: history rows, snapshots and state at epoch ends, final models and summary ----------
def _fp16_stalled(run: Run) -> str | None:
    """fp16: a skipped step halves the loss scale; below 1 the gradients were non-finite even unscaled, step
    after step, so the weights stopped changing while the loss stays finite (a silent no-op run otherwise)."""
    if run.scaler.is_enabled() and run.scaler.get_scale() < 1.0:
        return (f"fp16 loss scale fell to {run.scaler.get_scale():g}: non-finite gradients at every "
                f"scale, steps skipped (use runtime.precision fp32 or bf16)")
    return None


def record_evaluation(run: Run) -> bool:
    """Statistics on the fixed points (eval mode), CO flags, early-stopping choice, history row.
    Returns False (the run diverged) when the training loss since the last row is not finite."""
    p = run.progress
    p.running = distributed.sum_over_ranks(p.running, run.group, run.device)  # the global batch's, on every rank
    row = {"epoch": p.epoch, "iteration": p.global_step, "epochs": run.plan.epochs_at(p.global_step),
           "lr": run.plan.lr(p.global_step), **p.training_row(), "train_seconds": p.train_seconds}
    if p.global_step and not math.isfinite(row["train_loss"]):
        return False
    run.divergence = _fp16_stalled(run)
    if run.divergence:
        return False
    at_epoch_end = p.it in (0, run.plan.iterations(p.epoch))
    gen = generator(run.device, run.seed, p.epoch, "monitor", *(() if at_epoch_end else (p.global_step,)))
    distributed.share_rank0_buffers(run.model, run.group)
    row.update(run.monitor.evaluate(run.model, run.method.eps, gen))
    p.history.append(row)
    run.monitor.flag(p.history)
    if run.monitor.improves(row, p.best):
        p.best = {"acc": run.monitor.criterion(row), "epoch": p.epoch, "iteration": p.global_step,
                  "state": _cpu_state(run.model)}
    p.running = dict.fromkeys(RUNNING, 0.0)
    run.last_finite = _cpu_state(run.model)
    if run.group.main:
        atomic.write_text(run.out / "history.csv", pd.DataFrame(p.history).to_csv(index=False))
        run.tracker.row(row)
        print(run.monitor.describe(row), flush=True)
    return True


def end_epoch(run: Run) -> None:
    """Snapshot (small, per epoch) and resumable state; the next epoch starts."""
    p = run.progress
    p.snapshots.append({"epoch": torch.tensor(p.epoch), **getattr(run.model, "snapshot", dict)()})
    arrays = {k: np.stack([s[k].numpy() for s in p.snapshots]) for k in p.snapshots[0]}

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    if run.group.main:
        atomic.write_with(run.out / "snapshots.npz", write)
    p.epoch, p.it = p.epoch + 1, 0
    run.save_state()


def finalize(run: Run, status: str, reason: str | None) -> dict:
    """The final and early-stopped model files, then ``summary.json`` (last: it marks the run done)."""
    p, cfg = run.progress, run.cfg.to_dict()
    if run.group.main:
        save_model(run.out / "model_final.pt", run.model, run.cfg, "final", p.history[-1]["epoch"])
        best_model = make_model(run.cfg, torch.device("cpu"))
        best_model.load_state_dict(p.best["state"] if p.best["state"] is not None else _cpu_state(run.model))
        save_model(run.out / "model_best.pt", best_model, run.cfg, "best", p.best["epoch"])
    co = [r for r in p.history if r["co"]]
    epochs_done = p.history[-1]["epoch"]
    if status == "completed" and not run.monitor.learned(p.history):
        status, reason = "not_learned", (f"clean accuracy on the {run.monitor.n} monitored points never above "
                                         f"{cfg['monitor']['learned_clean_ratio']:g} x chance "
                                         f"({run.monitor.chance:.3f}) at level {cfg['monitor']['co_alpha']:g}, "
                                         "and no evaluation flagged as catastrophic overfitting")
    summary = {
        "status": status, "reason": reason, "monitor_points": run.monitor.n, "monitor_chance": run.monitor.chance, "config": cfg, "epochs_done": epochs_done,
        "iterations_per_epoch": run.plan.iters_per_epoch, "iterations_done": p.history[-1]["iteration"],
        "phases": run.plan.stamp(),
        "best_epoch": p.best["epoch"], "best_iteration": p.best["iteration"], "best_by": cfg["monitor"]["best_by"],
        "best_value": p.best["acc"],
        "co_epoch": co[0]["epoch"] if co else None, "co_iteration": co[0]["iteration"] if co else None,
        "train_seconds": p.train_seconds, "seconds_per_epoch": p.train_seconds / max(epochs_done, 1),
        "final": {k: p.history[-1][k] for k in ("test_clean_acc", "test_fgsm_acc", "test_pgd_acc", "grad_alignment")},
        "hardware": hardware_stamp(run.device), "memory_layout": run.memory_layout,
        "double_backward": run.double_backward, "distributed": run.group.stamp(),
    }
    if run.group.main:
        atomic.write_json(run.out / "summary.json", summary)
        run.tracker.end(summary)
    return summary


def _resumed_alike(run: Run, resumed: str) -> None:
    """Refuse, on every rank, ranks that resumed different states (each reads the run folder itself)."""
    seen = distributed.every_rank(resumed, run.group)
    if len(set(seen)) > 1:
        raise FastAdvError(f"the ranks of {run.out} did not resume the same state ("
                           + "; ".join(f"rank {r}: {s}" for r, s in enumerate(seen))
                           + "); every rank must see the same run folder (one file system shared by the nodes)")


def _resume_or_start(run: Run, restart_if_changed: bool) -> None:
    state_path = run.out / "state.pt"
    st = load_weights_only(state_path, STATE_FORMAT) if state_path.is_file() else None
    if run.group.active:  # first: the checks below then take the same decisions on every rank
        _resumed_alike(run, "no state.pt" if st is None else f"state.pt of step {st['progress']['global_step']}, "
                       f"sha256 {hashlib.sha256(state_path.read_bytes()).hexdigest()[:16]}")
    if st is not None and st.get("world_size", 1) != run.group.world:
        raise FastAdvError(f"{state_path} was saved by a run on {st.get('world_size', 1)} rank(s); resume it on as "
                           f"many (this launch has {run.group.world}), or use another output directory")
    if st is not None:
        diff = config_diff(_comparable(st["config"]), _comparable(run.cfg.to_dict()))
        if diff and not restart_if_changed:
            raise FastAdvError(f"{state_path} was made with a different config ({'; '.join(diff[:3])}); "
                               "use another output directory, delete it, or pass --restart-if-changed")
        if diff and run.group.main:
            print(f"discarding {state_path}: made with a different config ({'; '.join(diff[:3])})", file=sys.stderr)
            state_path.unlink()
        st = None if diff else st
    if st is not None:
        run.load_state(st)
        if run.group.main:
            print(f"resuming {run.out} at epoch {run.progress.epoch} iteration {run.progress.it}", file=sys.stderr)
    elif run.group.main:
        atomic.write_text(run.out / "config.yaml", yaml.safe_dump(run.cfg.to_dict(), sort_keys=False))


def train(cfg: TrainConfig | dict, out_dir: str | Path, max_iterations: int | None = None,
          restart_if_changed: bool = False) -> dict:
    """Train (or resume, or skip if complete) the run ``cfg`` into ``out_dir``; returns the summary.

    ``cfg``: the resolved ``train`` section, typed (a dict is validated and typed here).
    ``max_iterations``: stop (state saved, ``Preempted`` raised) after this many
    iterations of this call — used by tests to simulate an interruption.
    ``restart_if_changed``: discard an interrupted run's ``state.pt`` made with another
    config and start afresh instead of refusing. The workflow sets it: Snakemake has
    already judged the run's outputs stale, and ``state.pt`` is not one of them.
    """
    cfg = as_train_config(cfg)
    out = Path(out_dir)
    if (out / "summary.json").is_file():
        done = json.loads((out / "summary.json").read_text())
        diff = config_diff(_comparable(done["config"]), _comparable(cfg.to_dict()))
        if not diff:
            return done
        raise FastAdvError(f"{out} holds a finished run with a different config ({'; '.join(diff[:3])}); "
                           "use another output directory")
    run = Run(cfg, out)
    try:
        return _run(run, cfg, max_iterations, restart_if_changed)
    except RuntimeError as e:
        if not (run.group.active and distributed.lost_peer(e)):
            raise
        first = str(e).strip().splitlines()[0][:200] if str(e).strip() else type(e).__name__
        raise FastAdvError(f"rank {run.group.rank} lost contact with the other ranks of the run ({first}); rerun "
                           "the launch to resume from the last saved state") from None
    finally:
        distributed.leave(run.group)


def _run(run: Run, cfg: TrainConfig, max_iterations: int | None, restart_if_changed: bool) -> dict:
    run.out.mkdir(parents=True, exist_ok=True)  # only now: a run refused while setting up leaves nothing behind
    _resume_or_start(run, restart_if_changed)
    p = run.progress
    run.tracker = Tracker(run.out, cfg.runtime.dvclive and run.group.main)
    run.tracker.start(cfg.to_dict(), p.history)
    show = run.group.main and {"auto": sys.stderr.isatty(), "always": True, "never": False}[cfg.runtime.progress]
    stop_after = None if max_iterations is None else p.global_step + max_iterations
    status, reason = "completed", None
    with SignalFlag() as sig:
        if p.epoch == 0:  # statistics at initialisation
            run.model.eval()
            record_evaluation(run)
            end_epoch(run)
        for epoch in tqdm(range(p.epoch, cfg.optim.epochs + 1), disable=not show, desc="epochs",
                          initial=p.epoch, total=cfg.optim.epochs + 1):
            if not run.train_epoch(sig, stop_after, show):
                status, reason = "diverged", run.divergence or f"non-finite training loss in epoch {epoch}"
                run.model.load_state_dict(run.last_finite)  # the final model is the last finite one
                break
            end_epoch(run)
    return finalize(run, status, reason)
