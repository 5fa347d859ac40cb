"""ImageNet (Andriushchenko & Flammarion 2020, Table 6, trained with Wong et al.'s recipe): how gradient alignment
evolves over training (the author response's question "why does CO not occur on ImageNet for ε ∈ {2, 4}, how does
the gradient alignment evolve?" — it decreases gradually, without the sharp drop of CO), and Table 6 with both
evaluation protocols (the paper's PGD-50-10 on 1,000 points; Wong et al.'s α = 1/255 on the whole validation set)."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from fastadv.errors import FastAdvError
from fastadv.paper.figures import _plt, draw_curves, save_figure, style
from fastadv.paper.reference import published_value


def read_histories(paths) -> dict[tuple[str, float], pd.DataFrame]:
    """(variant, ε) → history.csv of ``…/{variant}/eps{ε}/seed{s}/history.csv`` (the first seed's)."""
    out = {}
    for p in sorted(map(Path, paths)):
        key = (p.parents[2].name, float(p.parents[1].name.removeprefix("eps")))
        out.setdefault(key, pd.read_csv(p))
    return out


def alignment_over_training(histories: dict[tuple[str, float], pd.DataFrame], out_pdf, scale: str) -> pd.DataFrame:
    """PGD accuracy on the monitoring points (top) and gradient alignment (bottom) against epochs (fractional:
    every evaluation), one column per ε, one line per method; × marks evaluations flagged as CO."""
    plt = _plt()
    eps_list = sorted({e for _, e in histories})
    fig, axes = plt.subplots(2, len(eps_list), figsize=(2.4 * len(eps_list), 3.8), sharex=True, squeeze=False)
    drawn = []
    for (variant, eps), h in histories.items():
        top, bottom = axes[0][eps_list.index(eps)], axes[1][eps_list.index(eps)]
        draw_curves(top, bottom, h, "epochs", variant)
        top.set_title(f"ε = {eps:g}/255")
        drawn.append(h[["epochs", "test_pgd_acc", "grad_alignment", "co"]].assign(variant=variant, eps=eps))
    axes[0][0].set_ylabel("PGD accuracy (%)")
    axes[1][0].set_ylabel("gradient alignment")
    for ax in axes[1]:
        ax.set_xlabel("epoch")
    for ax in axes.flat:
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="best")
    fig.suptitle(f"ImageNet, {scale} scale: monitoring points at each phase's crop (× = catastrophic overfitting)",
                 fontsize=7)
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)


def table6(df: pd.DataFrame, published: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per method, ε and model (the final one; the early-stopped one, ``best (clean)`` where kept by clean validation
    accuracy as Wong et al.'s model_best.pth.tar, monitor.best_by), means over seeds: clean accuracy on the evaluated
    points and on the whole test set, PGD under the paper's protocol and under the second one
    (evaluate.also_protocol), in %; with ``published``, the published clean / PGD / AutoAttack values where they
    exist (NaN elsewhere)."""
    rows = []
    for (label, eps, kind), g in df.groupby(["method_label", "eps", "model_kind"], sort=True):
        model = kind if kind == "final" else f"{kind} ({g['best_by'].iloc[0]})"
        row = {"method": style(label)[0], "method_label": label, "eps": eps, "model": model, "seeds": len(g),
               "clean_acc": 100 * g["clean_acc"].mean(), "clean_acc_full": 100 * g["clean_acc_full"].mean(),
               "pgd_protocol": g["pgd_protocol"].iloc[0], "n_points": int(g["n_points"].iloc[0]),
               "pgd_acc": 100 * g["pgd_acc"].mean(), "pgd_acc_max_loss": 100 * g["pgd_acc_max_loss"].mean(),
               "also_protocol": g["also_protocol"].iloc[0], "also_n_points": g["also_n_points"].iloc[0],
               "also_pgd_acc": 100 * g["also_pgd_acc"].mean()}
        if published is not None:
            for col in ("clean_acc", "pgd_acc", "autoattack_acc"):
                row[f"published_{col}"] = published_value(published, "imagenet", label, col, eps)[0]
        rows.append(row)
    return pd.DataFrame(rows)


# The author response to reviewer 2 (GradAlign, NeurIPS 2020), as the issue quotes it: what the r2_targeted table
# puts beside the measured numbers.
R2_AUTHORS = ("the authors \"briefly tried targeted AT with ε=16/255 on ImageNet\" and did not obtain a robust "
              "enough model in 15 epochs (\"LLR used 110 epochs\")")


def r2_targeted(df: pd.DataFrame) -> pd.DataFrame:
    """Per method, ε and model, means over seeds (%): clean accuracy, untargeted PGD (the paper's protocol) and, for
    every random-targeted PGD-k run (``evaluate.targeted_steps``), accuracy (the prediction is the label) and attack
    success (the prediction is the target), as Xie et al. report them. A results table without targeted runs is
    refused in one line."""
    runs = sorted({int(c[len("targeted"):-len("_acc")]) for c in df.columns
                   if c.startswith("targeted") and c.endswith("_acc")})
    if not runs:
        raise FastAdvError("the R2 table needs random-targeted runs: set evaluate.targeted_steps in the experiment")
    rows = []
    for (label, eps, kind), g in df.groupby(["method_label", "eps", "model_kind"], sort=True):
        row = {"method": style(label)[0], "method_label": label, "eps": eps,
               "model": kind if kind == "final" else f"{kind} ({g['best_by'].iloc[0]})", "seeds": len(g),
               "train_status": ", ".join(sorted(set(map(str, g["train_status"])))),
               "clean_acc": 100 * g["clean_acc"].mean(), "pgd_acc": 100 * g["pgd_acc"].mean()}
        for k in runs:
            row[f"targeted{k}_acc"] = 100 * g[f"targeted{k}_acc"].mean()
            row[f"targeted{k}_success"] = 100 * g[f"targeted{k}_success"].mean()
        rows.append(row)
    return pd.DataFrame(rows)
