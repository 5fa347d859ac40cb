"""Final evaluation of a trained model: clean, PGD-50-10 (paper protocol) and AutoAttack.

Protocols (ε = the model's training ε unless given):
  pgd50_10       Andriushchenko & Flammarion (2020): 50 steps, 10 restarts, α = ε/4,
                 uniform random start, fp32, eval mode. ``pgd.acc``: worst case over restarts
                 (a point is broken if any restart breaks it); with ``restart_rule: both`` also
                 ``pgd.acc_max_loss``, the official code's rule (the restart of highest loss counts).
  wong_pgd50_10  Wong et al. (2020): the same with α = 2/255 (their CIFAR-10 evaluation).
  wong_imagenet_pgd50_10  the same with α = 1/255 (their ImageNet evaluation: run_eval.sh, configs_fast_*_evaluate.yml).
Points: the first ``n_points`` test images (paper: 1000; None = the whole test set).
AutoAttack: the standard version (APGD-CE, APGD-T, FAB-T, Square; Croce & Hein, ICML
2020) from the ``pyautoattack`` package, fixed seed, run one attack at a time on the
points still robust — exactly what its standard run does — so per-attack robust
accuracy is recorded and a killed evaluation resumes after the last finished attack.

PGD progress is saved per evaluation batch, so an interrupted evaluation resumes
too; every random start is a function of (seed, batch), so resuming changes nothing.
"""
from __future__ import annotations

import json
from contextlib import contextmanager
import time
import warnings
from pathlib import Path

import torch

from fastadv import atomic
from fastadv.attacks import pgd_attack
from fastadv.config.run_config import EvalConfig, as_eval_config
from fastadv.attacks.pgd import pgd_restart_outcomes, restart_rules
from fastadv.training.checkpoint import load_model, load_model_record
from fastadv.config.params import FOLDER_DATASETS
from fastadv.data.datasets import load_split
from fastadv.errors import FastAdvError
from fastadv.methods.registry import method_label
from fastadv.training.monitor import accuracy
from fastadv.training.runtime import generator, hardware_stamp, select_device, set_threads
from fastadv.units import eps_absolute, eps_in_255ths

RESULT_FORMAT = "fastadv-eval-v1"
STATE_FORMAT = "fastadv-eval-state-v1"
PROTOCOLS = {
    # name: (steps, restarts, step size as a function of ε)
    "pgd50_10": (50, 10, lambda eps: eps / 4),
    "wong_pgd50_10": (50, 10, lambda eps: eps_absolute(2)),
    "wong_imagenet_pgd50_10": (50, 10, lambda eps: eps_absolute(1)),
}
AUTOATTACK_STANDARD = ("apgd-ce", "apgd-t", "fab-t", "square")


def _fraction(flags: torch.Tensor) -> float:
    """Share of True flags, computed exactly as count / n (same float as ``monitor.accuracy``)."""
    return int(flags.sum()) / len(flags)


class _State:
    """Partial results in ``<out>.state.pt``: finished PGD batches and AutoAttack progress."""

    def __init__(self, path: Path, key: dict):
        self.path, self.key = path, key
        self.data = {"format": STATE_FORMAT, "key": key, "pgd": {}, "also": {}, "aa_flags": None, "aa_done": [],
                     "aa_acc": {}}
        if path.is_file():
            try:
                st = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a broken partial state is only lost work: start over
                st = None
            if isinstance(st, dict) and st.get("format") == STATE_FORMAT and st.get("key") == key:
                self.data = st

    def save(self):
        atomic.save_torch(self.path, self.data)

    def remove(self):
        self.path.unlink(missing_ok=True)


def robust_flags(model, x, y, eps, protocol, batch_size, seed, device, done: dict | None = None,
                checkpoint=lambda: None, restart_rule: str = "worst_case") -> dict:
    """Per-point robustness flags under ``protocol``: {"worst_case": …} and, with ``restart_rule``
    ``both``, {"max_loss": …} (the official rule; every restart then runs on every point). Batches
    already in ``done`` (batch index → flags) are kept, and ``checkpoint`` is called after each new
    batch (resumable evaluation). The random starts are the same under both settings."""
    return _flags_by_batch(model, lambda i, j: (x[i:j], y[i:j]), len(y), eps, protocol, batch_size, seed, device,
                           done, checkpoint, restart_rule)


def split_robust_flags(model, split, n: int, eps, protocol, batch_size, seed, device, done: dict | None = None,
                       checkpoint=lambda: None, restart_rule: str = "worst_case") -> dict:
    """:func:`robust_flags` on the first ``n`` points of a split, loaded batch by batch (a whole ImageNet
    validation set does not fit in memory); the same flags as on the same points in memory."""
    def points(i, j):
        return split.batch(torch.arange(i, j, device=split.device))

    return _flags_by_batch(model, points, n, eps, protocol, batch_size, seed, device, done, checkpoint, restart_rule)


def _flags_by_batch(model, points, n, eps, protocol, batch_size, seed, device, done, checkpoint, restart_rule):
    steps, restarts, alpha = PROTOCOLS[protocol]
    done = {} if done is None else done
    for b, i in enumerate(range(0, n, batch_size)):
        if b in done:
            continue
        (xs, ys), gen = points(i, min(i + batch_size, n)), generator(device, seed, "pgd", b)
        if restart_rule == "both":
            correct, loss = pgd_restart_outcomes(model, xs, ys, eps, alpha(eps), steps, restarts, gen)
            with torch.no_grad():
                clean = model(xs).argmax(1) == ys
            done[b] = {k: v.cpu() for k, v in restart_rules(clean, correct, loss).items()}
        else:  # points already broken are not attacked again: the same worst case, less work
            x_adv = pgd_attack(model, xs, ys, eps, alpha(eps), steps, restarts, random_init=True, gen=gen)
            with torch.no_grad():
                done[b] = {"worst_case": (model(x_adv).argmax(1) == ys).cpu()}
        checkpoint()
    return {k: torch.cat([done[b][k] for b in sorted(done)]) for k in done[0]}


def robust_accuracy(model, x: torch.Tensor, y: torch.Tensor, eps: float, protocol: str = "pgd50_10",
                    batch_size: int = 1024, seed: int = 0) -> float:
    """Robust accuracy of ``model`` on in-memory points (NCHW in [0,1]) under PGD-50-10, the paper's
    protocol (Andriushchenko & Flammarion 2020: 50 steps, 10 restarts, α = ε/4, random start; a point
    is robust only if no restart breaks it), or another of :data:`PROTOCOLS`; ``eps`` absolute.

    The random starts are those of ``fastadv evaluate`` for the same seed and batch size, so on the
    same points this equals its result's ``pgd.acc``. Evaluate in eval mode, as the paper does."""
    if protocol not in PROTOCOLS:
        raise FastAdvError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if model.training:
        warnings.warn("robust_accuracy: the model is in train mode (batch-norm batch statistics); "
                      "the paper evaluates in eval mode: call model.eval() first", stacklevel=2)
    return _fraction(robust_flags(model, x, y, eps, protocol, batch_size, seed, x.device)["worst_case"])


def _autoattack(model, x, y, eps, seed, batch_size, state: _State, device) -> dict:
    try:
        from pyautoattack import AutoAttack
    except ImportError:
        raise FastAdvError("AutoAttack requested but the 'pyautoattack' package is not installed "
                           "(pip install pyautoattack==0.2.0)") from None
    import logging

    logging.getLogger("auto-attack").setLevel(logging.WARNING)
    if state.data["aa_flags"] is None:
        with torch.no_grad():
            state.data["aa_flags"] = torch.cat([model(x[i:i + batch_size]).argmax(1) == y[i:i + batch_size]
                                                for i in range(0, len(y), batch_size)]).cpu()
    for attack in AUTOATTACK_STANDARD:
        if attack in state.data["aa_done"]:
            continue
        flags = state.data["aa_flags"]
        idx = flags.nonzero().squeeze(1)
        if len(idx):
            aa = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=seed, device=device)
            aa.verbose = False
            aa.attacks_to_run = [attack]
            x_adv, _ = aa.run_standard_evaluation(x[idx.to(x.device)], y[idx.to(x.device)], batch_size=batch_size)
            with torch.no_grad():
                still = torch.cat([model(x_adv[i:i + batch_size]).argmax(1) == y[idx.to(x.device)][i:i + batch_size]
                                   for i in range(0, len(idx), batch_size)]).cpu()
            flags = flags.clone()
            flags[idx] = still
        state.data["aa_flags"] = flags
        state.data["aa_done"].append(attack)
        state.data["aa_acc"][attack] = _fraction(flags)
        state.save()
    return {"version": "standard", "attacks": list(AUTOATTACK_STANDARD), "seed": seed,
            "acc_after": dict(state.data["aa_acc"]), "acc": _fraction(state.data["aa_flags"])}


def evaluate(model_path: str | Path, out_path: str | Path, cfg: EvalConfig | dict, eps255: float | None = None,
             data_root: str | None = None) -> dict:
    """Evaluate one model file; write the result JSON atomically to ``out_path`` and return it. ``cfg``: the
    ``evaluate`` section (a dict is validated and typed here). ``eps255``: ε in units of 1/255, as the command
    line takes it (default: the training ε). ``data_root``: the prepared data (default: the run's data.root)."""
    t_start = time.perf_counter()
    cfg = as_eval_config(cfg)
    set_threads(cfg.threads)
    device = select_device(cfg.device)
    record = load_model_record(model_path)
    model = load_model(model_path, device)
    run_cfg = record["config"]  # as the model file stores it (any version's): read only what evaluation needs
    eps255 = run_cfg["method"]["eps"] if eps255 is None else eps255
    if not 0 < eps255 <= 128:
        raise FastAdvError(f"evaluation eps {eps255!r} out of range; valid: (0, 128] (units of 1/255)")
    eps = eps_absolute(eps255)
    if cfg.crop is not None and run_cfg["data"]["dataset"] not in FOLDER_DATASETS:
        raise FastAdvError(f"evaluate.crop {cfg.crop} crops image-folder datasets ({', '.join(FOLDER_DATASETS)}); "
                           f"{run_cfg['data']['dataset']!r} has none: set it null")
    test = load_split(data_root or run_cfg["data"]["root"], run_cfg["data"]["dataset"], "test", device, crop=cfg.crop)
    n = len(test) if cfg.n_points is None else min(cfg.n_points, len(test))
    x, y = test.head(n)
    out_path = Path(out_path)
    key = {"model": str(Path(model_path).resolve()), "eps": eps255, "n": n, "protocol": cfg.protocol,
           "seed": cfg.seed, "autoattack": cfg.autoattack, "restart_rule": cfg.restart_rule,
           "also": [cfg.also_protocol, cfg.also_n_points], "crop": cfg.crop}
    state = _State(out_path.with_name(out_path.name + ".state.pt"), key)

    seconds = {}
    with _timed(seconds, "clean"):
        clean_full = split_accuracy(model, test, cfg.batch_size) if cfg.full_clean else None
        clean = accuracy(model, x, y, cfg.batch_size)
    with _timed(seconds, "pgd"):
        robust = robust_flags(model, x, y, eps, cfg.protocol, cfg.batch_size, cfg.seed, device, state.data["pgd"],
                              state.save, cfg.restart_rule)
    also = None
    if cfg.also_protocol is not None:
        n_also = len(test) if cfg.also_n_points is None else min(cfg.also_n_points, len(test))
        with _timed(seconds, "also"):
            flags = split_robust_flags(model, test, n_also, eps, cfg.also_protocol, cfg.batch_size, cfg.seed, device,
                                       state.data["also"], state.save, cfg.restart_rule)
        also = {**_pgd_result(cfg, cfg.also_protocol, eps, flags), "n_points": n_also,
                "points": f"first {n_also} test images"}
    aa = None
    if cfg.autoattack:
        with _timed(seconds, "autoattack"):
            aa = _autoattack(model, x, y, eps, cfg.seed, cfg.autoattack_batch_size, state, device)
    seconds["total"] = time.perf_counter() - t_start
    result = {
        "format": RESULT_FORMAT, "model_path": str(model_path), "model_kind": record["kind"],
        "model_epoch": record["epoch"], "dataset": run_cfg["data"]["dataset"], "method": run_cfg["method"]["name"],
        "method_label": method_label(run_cfg["method"], run_cfg["model"]), "train_eps": run_cfg["method"]["eps"],
        "eps": eps255, "train_seed": run_cfg["runtime"]["seed"], "eval_seed": cfg.seed, "n_points": n,
        "points": f"first {n} test images", "clean_acc_full": clean_full, "clean_acc": clean,
        "pgd": _pgd_result(cfg, cfg.protocol, eps, robust), "also": also, "autoattack": aa, "seconds": seconds,
        "hardware": hardware_stamp(device), "train_config": run_cfg, "eval_config": cfg.to_dict(),
    }
    atomic.write_json(out_path, result)
    state.remove()
    return result


@contextmanager
def _timed(seconds: dict, key: str):
    t = time.perf_counter()
    yield
    seconds[key] = time.perf_counter() - t


def _pgd_result(cfg: EvalConfig, protocol: str, eps: float, robust: dict) -> dict:
    steps, restarts, alpha = PROTOCOLS[protocol]
    return {"protocol": protocol, "steps": steps, "restarts": restarts, "alpha": eps_in_255ths(alpha(eps)),
            "acc": _fraction(robust["worst_case"]), "restart_rule": cfg.restart_rule,
            "acc_max_loss": _fraction(robust["max_loss"]) if "max_loss" in robust else None}


def split_accuracy(model, split, batch_size: int) -> float:
    """Clean accuracy on a whole split, loaded batch by batch (an image-folder split does not fit in memory)."""
    correct = 0
    for i in range(0, len(split), batch_size):
        x, y = split.batch(torch.arange(i, min(i + batch_size, len(split)), device=split.device))
        with torch.no_grad():
            correct += int((model(x).argmax(1) == y).sum())
    return correct / len(split)


def load_result(path: str | Path) -> dict:
    path = Path(path)
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FastAdvError(f"result {str(path)!r} unreadable ({type(e).__name__}: {e})") from None
    if res.get("format") != RESULT_FORMAT:
        raise FastAdvError(f"result {str(path)!r} has format {res.get('format')!r}; expected {RESULT_FORMAT!r}")
    return res
