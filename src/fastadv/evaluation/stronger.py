"""Attacks run beside PGD-50-10 and AutoAttack on the same points (``fastadv evaluate``): MultiTargeted (Gowal et al.
2019) and random-targeted PGD (Kannan et al. 2018; Xie et al. 2019), the two the GradAlign rebuttal's reviewer 2
asked for. Each is computed batch by batch into the evaluation's resumable state; every random start is a function
of (seed, attack, batch) and every target of (seed, point index), so a resumed evaluation changes nothing.
"""
from __future__ import annotations

import time

import torch

from fastadv.attacks.multitargeted import multitargeted_broken
from fastadv.attacks.targeted import random_targets, step_size, targeted_outcomes
from fastadv.errors import FastAdvError
from fastadv.evaluation.progress import Progress
from fastadv.training.runtime import generator
from fastadv.units import eps_absolute, eps_in_255ths


def _fraction(flags: torch.Tensor) -> float:
    return int(flags.sum()) / len(flags)


def num_outputs(model, x: torch.Tensor) -> int:
    with torch.no_grad():
        return model(x[:1]).shape[1]


def check_classes(cfg, num_classes: int) -> None:
    """One line naming the value when a requested attack cannot run on a model with ``num_classes`` outputs."""
    if cfg.multitargeted and cfg.multitargeted_targets > num_classes - 1:
        raise FastAdvError(f"evaluate.multitargeted_targets {cfg.multitargeted_targets} out of range; valid: 1 to "
                           f"{num_classes - 1} (the classes other than the label; the model has {num_classes})")
    if cfg.targeted_steps and num_classes < 2:
        raise FastAdvError(f"evaluate.targeted_steps {list(cfg.targeted_steps)}: a targeted attack needs a wrong "
                           f"class to aim at; the model has {num_classes} output; valid: null")


def stronger_attacks(model, x, y, eps: float, cfg, n_split: int, num_classes: int, state: dict, save,
                     progress: Progress, seconds: dict) -> dict:
    """{"multitargeted": …, "targeted": …} for the evaluation config ``cfg`` (each None where not asked for);
    ``n_split``: the size of the test split the points head (targets are drawn for all of it); ``state``: the
    evaluation state's dict for these attacks (batch results kept across a kill), ``save`` persists it; the caller
    checked ``cfg`` against ``num_classes`` (:func:`check_classes`) before any attack ran."""
    out = {"multitargeted": None, "targeted": None}
    if cfg.multitargeted:
        t = time.perf_counter()
        out["multitargeted"] = _multitargeted(model, x, y, eps, cfg, state.setdefault("mt", {}), save)
        seconds["multitargeted"] = time.perf_counter() - t
        progress.line(f"MultiTargeted: robust accuracy {out['multitargeted']['acc']:.4f} ({seconds['multitargeted']:.1f} s)")
    if cfg.targeted_steps:
        t = time.perf_counter()
        out["targeted"] = _targeted(model, x, y, eps, cfg, n_split, num_classes, state.setdefault("targeted", {}), save)
        seconds["targeted"] = time.perf_counter() - t
        for steps, r in out["targeted"]["runs"].items():
            progress.line(f"random-targeted PGD-{steps}: accuracy {r['acc']:.4f}, attack success {r['success']:.4f}")
    return out


def _batches(n: int, batch_size: int):
    return enumerate(range(0, n, batch_size))


def _multitargeted(model, x, y, eps, cfg, done: dict, save) -> dict:
    alpha = eps / 4
    for b, i in _batches(len(y), cfg.batch_size):
        if b not in done:
            j = min(i + cfg.batch_size, len(y))
            done[b] = multitargeted_broken(model, x[i:j], y[i:j], eps, alpha, cfg.multitargeted_steps,
                                           cfg.multitargeted_restarts, cfg.multitargeted_targets,
                                           cfg.multitargeted_schedule, generator(x.device, cfg.seed, "mt", b)).cpu()
            save()
    broken = torch.cat([done[b] for b in sorted(done)])
    return {"attack": "multitargeted", "targets": cfg.multitargeted_targets, "restarts": cfg.multitargeted_restarts,
            "steps": cfg.multitargeted_steps, "alpha": eps_in_255ths(alpha), "schedule": cfg.multitargeted_schedule,
            "loss": "margin z_t - z_y", "seed": cfg.seed, "acc": _fraction(~broken)}


def _targeted(model, x, y, eps, cfg, n_split: int, num_classes: int, done: dict, save) -> dict:
    targets = random_targets(n_split, num_classes, y, cfg.seed)
    runs = {}
    for steps in cfg.targeted_steps:
        alpha = step_size(eps, eps_absolute(cfg.targeted_alpha), steps)
        mine = done.setdefault(steps, {})
        for b, i in _batches(len(y), cfg.batch_size):
            if b not in mine:
                j = min(i + cfg.batch_size, len(y))
                correct, hit = targeted_outcomes(model, x[i:j], y[i:j], targets[i:j], eps, alpha, steps,
                                                 generator(x.device, cfg.seed, "targeted", steps, b))
                mine[b] = {"correct": correct.cpu(), "hit": hit.cpu()}
                save()
        correct = torch.cat([mine[b]["correct"] for b in sorted(mine)])
        hit = torch.cat([mine[b]["hit"] for b in sorted(mine)])
        runs[str(steps)] = {"steps": steps, "alpha": eps_in_255ths(alpha), "acc": _fraction(correct),
                            "success": _fraction(hit)}
    return {"attack": "random_targeted_pgd", "target": "(label + U{1..K-1}) mod K", "classes": num_classes,
            "seed": cfg.seed, "restarts": 1, "runs": runs}
