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

from contextlib import contextmanager
import time
import warnings
from pathlib import Path

import torch

from fastadv import atomic
from fastadv.attacks import pgd_attack
from fastadv.config.params import packaged_params, read_params
from fastadv.config.run_config import EvalConfig, as_eval_config
from fastadv.attacks.pgd import pgd_restart_outcomes, restart_rules
from fastadv.training.checkpoint import load_model, load_model_record
from fastadv.data.registry import FOLDER_DATASETS
from fastadv.data.datasets import load_split
from fastadv.errors import FastAdvError
from fastadv.evaluation.progress import SILENT, Progress
from fastadv.evaluation.result_file import RESULT_FORMAT
from fastadv.evaluation.stronger import check_classes, num_outputs, stronger_attacks
from fastadv.methods.registry import method_label
from fastadv.training.monitor import accuracy
from fastadv.training.runtime import generator, hardware_stamp, select_device, set_threads
from fastadv.units import eps_absolute, eps_in_255ths

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

    def __init__(self, path: Path | None, key: dict):
        self.path, self.key = path, key  # path None: kept in memory only (fastadv.evaluate_model)
        self.data = {"format": STATE_FORMAT, "key": key, "pgd": {}, "also": {}, "aa_flags": None,
                     "aa_done": [], "aa_acc": {}}
        if path is not None and path.is_file():
            try:
                st = torch.load(path, map_location="cpu", weights_only=True)
            except Exception:  # a broken partial state is only lost work: start over
                st = None
            if isinstance(st, dict) and st.get("format") == STATE_FORMAT and st.get("key") == key:
                self.data = st

    def save(self):
        if self.path is not None:
            atomic.save_torch(self.path, self.data)

    def remove(self):
        if self.path is not None:
            self.path.unlink(missing_ok=True)


def robust_flags(model, x, y, eps, protocol, batch_size, seed, device, done: dict | None = None,
                checkpoint=lambda: None, restart_rule: str = "worst_case", progress: Progress = SILENT) -> dict:
    """Per-point robustness flags under ``protocol``: {"worst_case": …} and, with ``restart_rule``
    ``both``, {"max_loss": …} (the official rule; every restart then runs on every point). Batches
    already in ``done`` (batch index → flags) are kept, and ``checkpoint`` is called after each new
    batch (resumable evaluation). The random starts are the same under both settings."""
    return _flags_by_batch(model, lambda i, j: (x[i:j], y[i:j]), len(y), eps, protocol, batch_size, seed, device,
                           done, checkpoint, restart_rule, progress)


def split_robust_flags(model, split, n: int, eps, protocol, batch_size, seed, device, done: dict | None = None,
                       checkpoint=lambda: None, restart_rule: str = "worst_case", progress: Progress = SILENT) -> dict:
    """:func:`robust_flags` on the first ``n`` points of a split, loaded batch by batch (a whole ImageNet
    validation set does not fit in memory); the same flags as on the same points in memory."""
    def points(i, j):
        return split.batch(torch.arange(i, j, device=split.device))

    return _flags_by_batch(model, points, n, eps, protocol, batch_size, seed, device, done, checkpoint, restart_rule,
                           progress)


def _flags_by_batch(model, points, n, eps, protocol, batch_size, seed, device, done, checkpoint, restart_rule,
                    progress) -> dict:
    done = {} if done is None else done
    starts = range(0, n, batch_size)
    with progress.bar(len(starts), protocol) as bar:
        for b, i in enumerate(starts):
            if b not in done:
                xs, ys = points(i, min(i + batch_size, n))
                _attack_batch(model, xs, ys, eps, protocol, restart_rule, generator(device, seed, "pgd", b), done, b)
                checkpoint()
            bar.update(1)
    return {k: torch.cat([done[b][k] for b in sorted(done)]) for k in done[0]}


def _attack_batch(model, xs, ys, eps, protocol, restart_rule, gen, done: dict, b: int) -> None:
    """One PGD batch: its per-point flags into ``done[b]``."""
    steps, restarts, alpha = PROTOCOLS[protocol]
    if restart_rule == "both":
        correct, loss = pgd_restart_outcomes(model, xs, ys, eps, alpha(eps), steps, restarts, gen)
        with torch.no_grad():
            clean = model(xs).argmax(1) == ys
        done[b] = {k: v.cpu() for k, v in restart_rules(clean, correct, loss).items()}
    else:  # points already broken are not attacked again: the same worst case, less work
        x_adv = pgd_attack(model, xs, ys, eps, alpha(eps), steps, restarts, random_init=True, gen=gen)
        with torch.no_grad():
            done[b] = {"worst_case": (model(x_adv).argmax(1) == ys).cpu()}


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


def _autoattack(model, x, y, eps, seed, batch_size, state: _State, device, progress: Progress = SILENT) -> dict:
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
    with progress.bar(len(AUTOATTACK_STANDARD), "AutoAttack") as bar:
        for attack in AUTOATTACK_STANDARD:
            if attack not in state.data["aa_done"]:
                t = time.perf_counter()
                flags = _one_attack(AutoAttack, model, x, y, eps, seed, batch_size, device, attack,
                                    state.data["aa_flags"])
                state.data["aa_flags"] = flags
                state.data["aa_done"].append(attack)
                state.data["aa_acc"][attack] = _fraction(flags)
                state.save()
                progress.line(f"AutoAttack {attack}: robust accuracy {_fraction(flags):.4f} on {len(flags)} points "
                              f"({time.perf_counter() - t:.1f} s)")
            bar.update(1)
    return {"version": "standard", "attacks": list(AUTOATTACK_STANDARD), "seed": seed,
            "acc_after": dict(state.data["aa_acc"]), "acc": _fraction(state.data["aa_flags"])}


def _one_attack(AutoAttack, model, x, y, eps, seed, batch_size, device, attack: str, flags):
    """One attack of standard AutoAttack on the points still robust; the updated flags."""
    idx = flags.nonzero().squeeze(1)
    if not len(idx):
        return flags
    aa = AutoAttack(model, eps=eps, norm="Linf", version="standard", seed=seed, device=device)
    aa.verbose = False
    aa.attacks_to_run = [attack]
    xi, yi = x[idx.to(x.device)], y[idx.to(x.device)]
    x_adv, _ = aa.run_standard_evaluation(xi, yi, batch_size=batch_size)
    with torch.no_grad():
        still = torch.cat([model(x_adv[i:i + batch_size]).argmax(1) == yi[i:i + batch_size]
                           for i in range(0, len(idx), batch_size)]).cpu()
    flags = flags.clone()
    flags[idx] = still
    return flags


def evaluate(model_path: str | Path, out_path: str | Path, cfg: EvalConfig | dict, eps255: float | None = None,
             data_root: str | None = None, progress: Progress | None = None) -> dict:
    """Evaluate one model file; write the result JSON atomically to ``out_path`` and return it. ``cfg``: the
    ``evaluate`` section (a dict is validated and typed here). ``eps255``: ε in units of 1/255, as the command
    line takes it (default: the training ε). ``data_root``: the prepared data (default: the run's data.root;
    ``data`` for an imported model). A model imported from another code base (``fastadv import``) has no
    training config: its recorded origin says the dataset, its training ε and evaluation crop."""
    t_start = time.perf_counter()
    cfg, progress = as_eval_config(cfg), progress or Progress()
    set_threads(cfg.threads)
    device = select_device(cfg.device)
    record = load_model_record(model_path)
    model = load_model(model_path, device)
    about = _about(record, model_path)
    eps255 = about["train_eps"] if eps255 is None else eps255
    if eps255 is None:
        raise FastAdvError(f"{str(model_path)!r} records no training eps (imported without --eps): pass --eps")
    if not 0 < eps255 <= 128:
        raise FastAdvError(f"evaluation eps {eps255!r} out of range; valid: (0, 128] (units of 1/255)")
    eps = eps_absolute(eps255)
    if cfg.crop is not None and about["dataset"] not in FOLDER_DATASETS:
        raise FastAdvError(f"evaluate.crop {cfg.crop} crops image-folder datasets ({', '.join(FOLDER_DATASETS)}); "
                           f"{about['dataset']!r} has none: set it null")
    crop = cfg.crop if cfg.crop is not None else (record.get("origin") or {}).get("eval_crop")
    test = load_split(data_root or about["data_root"], about["dataset"], "test", device, crop=crop)
    n = len(test) if cfg.n_points is None else min(cfg.n_points, len(test))
    x, y = test.head(n)
    num_classes = num_outputs(model, x)
    check_classes(cfg, num_classes)  # before any attack runs: a bad value costs nothing
    out_path = Path(out_path)
    state = _State(out_path.with_name(out_path.name + ".state.pt"), _state_key(model_path, eps255, n, cfg))
    progress.line(f"{model_path}: {n} test points of {about['dataset']} at eps {eps255:g}/255")
    measured = _measure(model, x, y, eps, cfg, device, state, progress,
                        full=test if cfg.full_clean else None)
    measured["also"] = _also_protocol(model, test, eps, cfg, device, state, progress, measured["seconds"])
    measured.update(stronger_attacks(model, x, y, eps, cfg, len(test), num_classes,
                                     state.data.setdefault("stronger", {}), state.save, progress, measured["seconds"]))
    measured["seconds"]["total"] = time.perf_counter() - t_start
    result = {
        "format": RESULT_FORMAT, "model_path": str(model_path), "model_kind": record["kind"],
        "model_epoch": record["epoch"], **{k: v for k, v in about.items() if k != "data_root"},
        "eps": eps255, "eval_seed": cfg.seed, "n_points": n, "points": f"first {n} test images", **measured,
        "hardware": hardware_stamp(device), "eval_config": cfg.to_dict(),
    }
    atomic.write_json(out_path, result)
    state.remove()
    return result


def _state_key(model_path, eps255: float, n: int, cfg: EvalConfig) -> dict:
    """What a partial state was computed for: a state with another key is started over."""
    return {"model": str(Path(model_path).resolve()), "eps": eps255, "n": n, "protocol": cfg.protocol,
            "seed": cfg.seed, "autoattack": cfg.autoattack, "restart_rule": cfg.restart_rule,
            "also": [cfg.also_protocol, cfg.also_n_points], "crop": cfg.crop,
            "stronger": [cfg.multitargeted, cfg.multitargeted_targets, cfg.multitargeted_restarts,
                         cfg.multitargeted_steps, cfg.multitargeted_schedule, list(cfg.targeted_steps or []),
                         cfg.targeted_alpha, cfg.batch_size]}


def _about(record: dict, model_path) -> dict:
    """What a result says of the model: from its training config, or for an imported model from its origin."""
    run_cfg = record["config"]  # as the model file stores it (any version's): read only what evaluation needs
    if run_cfg is None:
        origin = record.get("origin")
        if not isinstance(origin, dict):
            raise FastAdvError(f"{str(model_path)!r} has neither a training config nor an origin")
        return {"dataset": origin["dataset"], "method": f"imported:{origin['source']}", "method_label": origin["name"],
                "train_eps": origin["eps"], "train_seed": None, "train_config": None, "origin": origin,
                "data_root": "data"}
    return {"dataset": run_cfg["data"]["dataset"], "method": run_cfg["method"]["name"],
            "method_label": method_label(run_cfg["method"], run_cfg["model"], run_cfg["data"]), "train_eps": run_cfg["method"]["eps"],
            "train_seed": run_cfg["runtime"]["seed"], "train_config": run_cfg, "data_root": run_cfg["data"]["root"]}


def _measure(model, x, y, eps: float, cfg: EvalConfig, device, state: _State, progress: Progress,
             full=None) -> dict:
    """Clean accuracy (and on the whole split ``full``), PGD under ``cfg.protocol``, AutoAttack if asked."""
    seconds = {}
    with _timed(seconds, "clean"):
        clean_full = split_accuracy(model, full, cfg.batch_size) if full is not None else None
        clean = accuracy(model, x, y, cfg.batch_size)
    progress.line(f"clean accuracy {clean:.4f}" + (f" (whole split {clean_full:.4f})" if full is not None else ""))
    with _timed(seconds, "pgd"):
        robust = robust_flags(model, x, y, eps, cfg.protocol, cfg.batch_size, cfg.seed, device, state.data["pgd"],
                              state.save, cfg.restart_rule, progress)
    pgd = _pgd_result(cfg, cfg.protocol, eps, robust)
    progress.line(f"{cfg.protocol}: robust accuracy {pgd['acc']:.4f}" + (
        f" (official max-loss rule {pgd['acc_max_loss']:.4f})" if pgd["acc_max_loss"] is not None else "")
        + f" ({seconds['pgd']:.1f} s)")
    aa = None
    if cfg.autoattack:
        with _timed(seconds, "autoattack"):
            aa = _autoattack(model, x, y, eps, cfg.seed, cfg.autoattack_batch_size, state, device, progress)
    return {"clean_acc_full": clean_full, "clean_acc": clean, "pgd": pgd, "autoattack": aa, "seconds": seconds}


def _also_protocol(model, test, eps: float, cfg: EvalConfig, device, state: _State, progress: Progress,
                   seconds: dict) -> dict | None:
    """``evaluate.also_protocol`` on its own first ``also_n_points`` test points (None: the whole split), loaded
    batch by batch; None without one."""
    if cfg.also_protocol is None:
        return None
    n = len(test) if cfg.also_n_points is None else min(cfg.also_n_points, len(test))
    with _timed(seconds, "also"):
        flags = split_robust_flags(model, test, n, eps, cfg.also_protocol, cfg.batch_size, cfg.seed, device,
                                   state.data["also"], state.save, cfg.restart_rule, progress)
    out = {**_pgd_result(cfg, cfg.also_protocol, eps, flags), "n_points": n, "points": f"first {n} test images"}
    progress.line(f"{cfg.also_protocol} on {n} points: robust accuracy {out['acc']:.4f} ({seconds['also']:.1f} s)")
    return out


def autoattack_choice(autoattack: bool | str) -> bool:
    """Whether to run AutoAttack: ``True``/``False`` as given; ``"auto"`` when ``pyautoattack`` (an optional extra)
    is installed, saying once per process when it is not, so that a plain install evaluates instead of raising."""
    if autoattack != "auto":
        if not isinstance(autoattack, bool):
            raise FastAdvError(f"autoattack {autoattack!r}; valid: True, False, 'auto'")
        return autoattack
    try:
        import pyautoattack  # noqa: F401
    except ImportError:
        warnings.warn("autoattack='auto': pyautoattack is not installed, so AutoAttack is skipped (clean and "
                      "PGD-50-10 only); pip install pyautoattack==0.2.0 to add it", stacklevel=3)
        return False
    return True


def evaluate_model(model, x: torch.Tensor, y: torch.Tensor, eps: float, protocol: str = "pgd50_10",
                   autoattack: bool | str = "auto", restart_rule: str = "both", batch_size: int = 1024,
                   autoattack_batch_size: int = 500, seed: int = 0, progress: str = "auto") -> dict:
    """What ``fastadv evaluate`` measures, for any ``nn.Module`` taking NCHW inputs in [0,1] and points in
    memory (``eps`` absolute): clean accuracy, PGD-50-10 (Andriushchenko & Flammarion 2020; ``restart_rule``
    both: the worst case over restarts, ``pgd.acc``, and the official code's max-loss rule, ``pgd.acc_max_loss``)
    and standard AutoAttack (Croce & Hein 2020; ``autoattack.acc_after`` per attack; ``"auto"``: when installed,
    :func:`autoattack_choice`; ``autoattack`` is None in the result where it did not run). The random starts and
    seeds are the command's, so on the same model, points, seed and batch sizes the numbers are its numbers.
    Evaluate in eval mode, as the paper does."""
    if protocol not in PROTOCOLS:
        raise FastAdvError(f"unknown protocol {protocol!r}; valid: {', '.join(PROTOCOLS)}")
    if model.training:
        warnings.warn("evaluate_model: the model is in train mode (batch-norm batch statistics); "
                      "the paper evaluates in eval mode: call model.eval() first", stacklevel=2)
    cfg = EvalConfig.from_dict({**read_params(packaged_params())["evaluate"], "n_points": None, "protocol": protocol,
                                "restart_rule": restart_rule, "autoattack": autoattack_choice(autoattack),
                                "batch_size": batch_size, "seed": seed, "autoattack_batch_size": autoattack_batch_size,
                                "full_clean": False, "device": "auto", "threads": 0, "also_protocol": None,
                                "also_n_points": None, "crop": None, "multitargeted": False, "targeted_steps": None})
    out = _measure(model, x, y, eps, cfg, x.device, _State(None, {}), Progress(progress))
    return {"n_points": len(y), "eps": eps_in_255ths(eps), **out}


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
