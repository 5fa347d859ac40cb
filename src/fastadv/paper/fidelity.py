"""How much each switch of parity with the official GradAlign code (tml-epfl/understanding-fast-adv-training,
commit ceed494) changes, measured on one trained model: ``fastadv fidelity``, rule ``check_fidelity``.

Each row runs both settings of one switch on the same model and points and reports the size of the
difference (share of pixels, cosine of parameter gradients, accuracy points), so a user sees what each
choice costs. The switches themselves and their defaults are documented in docs/guide/fidelity.md.
"""
from __future__ import annotations

import copy
import math
from pathlib import Path

import pandas as pd
import torch
import torch.nn.functional as F

from fastadv.attacks import fgsm_attack
from fastadv.training.checkpoint import load_model, training_config
from fastadv.data.datasets import load_split
from fastadv.performance.gpu_check import penalty_grad_cosine
from fastadv.evaluation.protocol import robust_flags
from fastadv.methods import StepContext, build_method, default_lambda
from fastadv.units import eps_absolute


def _param_grad(model, loss) -> torch.Tensor:
    return torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])


def _cos(a, b) -> float:
    return float(F.cosine_similarity(a.double(), b.double(), dim=0))


def _step_grad(model, method_cfg: dict, dataset: str, x, y, seed: int = 0) -> torch.Tensor:
    """Parameter gradient of one training step of ``method_cfg`` (train mode, a private copy of the model)."""
    m = copy.deepcopy(model).train()
    method = build_method(method_cfg, dataset)
    out = method.step(m, x, y, StepContext(torch.Generator(device=x.device).manual_seed(seed)))
    return _param_grad(m, out.loss)


def _row(number, switch, official, measured, value, note="") -> dict:
    return {"row": number, "switch": switch, "official": official, "measured": measured,
            "value": value, "note": note}


def _precision(model, x, y, eps, seed) -> list[dict]:
    """1. fp16 (the scripts' --half_prec): GradAlign's penalty gradient, g1 and η fixed, float16 autocast."""
    value, note = penalty_grad_cosine(model, x, y, eps, torch.float16, seed)
    if value == "non-finite":  # seen on trained models: NaN from the CPU's float16 convolution double backward
        note += " (CPU float16 kernels)"
    return [_row(1, "runtime.precision", "fp16 (apex O1)", "cosine of GradAlign's penalty gradient, fp16 "
                 "(CPU float16 autocast) vs fp32", value, note)]


def _clamp(model, ga: dict, dataset, x, y, eps, seed) -> list[dict]:
    """2 and 6. The clip inside the graph of the training attacks."""
    m = copy.deepcopy(model).train()
    rows = []
    for number, label, random_init in ((2, "FGSM", False), (6, "FGSM-RS", True)):
        pts = [fgsm_attack(m, x, y, eps, 1.25 * eps, random_init, torch.Generator().manual_seed(seed),
                           clamp_in_graph=c) for c in (True, False)]
        rows.append(_row(number, "method.clamp_in_graph", "true",
                         f"share of pixels where the {label} training point differs", float((pts[0] != pts[1]).float().mean())))
    on, off = (_step_grad(model, {**ga, "clamp_in_graph": c}, dataset, x, y, seed) for c in (True, False))
    return rows + [_row(2, "method.clamp_in_graph", "true", "cosine of a GradAlign step's parameter gradient, "
                        "clip in the graph vs not", _cos(on, off))]


def _restart_rule(model, xt, yt, eps, seed) -> list[dict]:
    """3. The restart rule of PGD-50-10 on the same draws."""
    flags = robust_flags(model.eval(), xt, yt, eps, "pgd50_10", 1024, seed, torch.device("cpu"), restart_rule="both")
    worst, official = (float(flags[k].float().mean()) for k in ("worst_case", "max_loss"))
    return [_row(3, "evaluate.restart_rule", "max_loss", f"PGD-50-10 accuracy on {len(yt)} test points: "
                 "worst case / official (max-loss restart)", f"{100 * worst:.1f} % / {100 * official:.1f} %",
                 f"difference {100 * (official - worst):.1f} points")]


def _early_stopping(model_path) -> list[dict]:
    """4. Early stopping at every evaluation vs at epoch ends, from the run's own history."""
    hist_path = Path(model_path).parent / "history.csv"
    if not hist_path.is_file():
        return []
    h = pd.read_csv(hist_path)
    ends = h[h["epochs"] == h["epochs"].round()] if "epochs" in h else h
    return [_row(4, "monitor.every_iterations", "200 (CNN: 50)", "best train PGD accuracy: at every evaluation / "
                 "at epoch ends only", f"{100 * h['train_pgd_acc'].max():.1f} % / {100 * ends['train_pgd_acc'].max():.1f} %",
                 f"{len(h)} evaluations, {len(ends)} at epoch ends")]


def _free_variant(model, eps255, dataset, x, y, seed) -> list[dict]:
    """5. Free AT: the official two passes per replay vs Shafahi et al.'s one, from the same δ."""
    free = {"name": "free", "eps": eps255, "clamp_in_graph": True, "free": {"replay": 8, "alpha": 1.0}}
    g_off, g_sha = (_step_grad(model, {**free, "free": {**free["free"], "variant": v}}, dataset, x, y, seed)
                    for v in ("official", "shafahi"))
    return [_row(5, "method.free.variant", "official", "cosine of the parameter gradient of the first replay step "
                 "(δ = 0), official vs shafahi", _cos(g_off, g_sha))]


def _clean_forward(model, eps255, dataset, x, y, seed) -> list[dict]:
    """7. The extra clean forward of PGD AT: batch-norm running statistics after one PGD-2 step."""
    stats = []
    for extra in (True, False):
        m = copy.deepcopy(model).train()
        build_method({"name": "pgd", "eps": eps255, "extra_clean_forward": extra, "clamp_in_graph": True,
                      "pgd": {"steps": 2, "alpha": 0.5, "random_init": False}}, dataset).step(
            m, x, y, StepContext(torch.Generator().manual_seed(seed)))
        stats.append(torch.cat([b.running_mean for b in m.modules() if isinstance(b, torch.nn.BatchNorm2d)]
                               or [torch.zeros(1)]))
    rel = float((stats[0] - stats[1]).norm() / stats[1].norm().clamp_min(1e-12))
    return [_row(7, "method.extra_clean_forward", "true", "relative change of the batch-norm running means "
                 "after one PGD-2 step", rel)]


def _drop_last(cfg, dataset, n_points) -> list[dict]:
    """8. drop_last: iterations per epoch at this run's data size."""
    n = cfg["data"]["subset"] or {"cifar10": 50_000, "svhn": 73_257, "mnist": 60_000}.get(dataset, n_points)
    bs = cfg["optim"]["batch_size"]
    return [_row(8, "optim.drop_last", "true", "iterations per epoch: dropping / keeping the last batch",
                 f"{n // bs} / {math.ceil(n / bs)}")]


def fidelity_report(model_path: str | Path, data_root: str | None = None, n_points: int = 256,
                    eval_points: int = 200, seed: int = 0) -> pd.DataFrame:
    """One row per measurement, on the model in ``model_path`` and the first ``n_points`` training images
    (training-time switches) or ``eval_points`` test images (the restart rule)."""
    cfg = training_config(model_path)
    dataset, eps255 = cfg["data"]["dataset"], cfg["method"]["eps"]
    eps = eps_absolute(eps255)
    model = load_model(model_path)
    root = data_root or cfg["data"]["root"]
    x, y = load_split(root, dataset, "train", "cpu").head(n_points)
    xt, yt = load_split(root, dataset, "test", "cpu").head(eval_points)
    lam = default_lambda(dataset, eps255) if dataset in ("cifar10", "svhn") else 0.2
    ga = {"name": "gradalign", "eps": eps255, "gradalign": {"lambda": lam, "alpha": 1.25}}
    rows = (_precision(model, x, y, eps, seed) + _clamp(model, ga, dataset, x, y, eps, seed)
            + _restart_rule(model, xt, yt, eps, seed) + _early_stopping(model_path)
            + _free_variant(model, eps255, dataset, x, y, seed) + _clean_forward(model, eps255, dataset, x, y, seed)
            + _drop_last(cfg, dataset, n_points))
    return pd.DataFrame(rows)
