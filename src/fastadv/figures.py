"""Figures from the tidy results table. Each function returns the data it drew (for tests)
and writes PDF (vector) + PNG atomically. Colours are fixed per method across figures."""
from __future__ import annotations

from pathlib import Path

import pandas as pd

from . import atomic
from .errors import FastAdvError

# One colour and display name per method label, the same in every figure.
METHOD_STYLE = {
    "standard": ("Standard", "#7f7f7f"),
    "fgsm": ("FGSM", "#d62728"),
    "fgsm_rs": ("FGSM-RS", "#ff7f0e"),
    "gradalign": ("FGSM+GradAlign", "#2ca02c"),
    "pgd2": ("PGD-2", "#1f77b4"),
    "pgd10": ("PGD-10", "#9467bd"),
    "free_m8": ("Free AT (m=8)", "#8c564b"),
}
PANELS = {"final": "final model", "best": "early-stopped model"}


def style(label: str) -> tuple[str, str]:
    return METHOD_STYLE.get(label, (label, "#17becf"))


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 8, "axes.titlesize": 8, "legend.fontsize": 7, "pdf.fonttype": 42})
    return plt


def save_figure(fig, out_pdf: str | Path) -> None:
    """Write ``out_pdf`` and the PNG beside it, each atomically."""
    out_pdf = Path(out_pdf)
    atomic.write_with(out_pdf, lambda p: fig.savefig(p, format="pdf", bbox_inches="tight"))
    atomic.write_with(out_pdf.with_suffix(".png"), lambda p: fig.savefig(p, format="png", dpi=200,
                                                                       bbox_inches="tight"))


def require_runs(df: pd.DataFrame, methods: list[str], eps: list[float], seeds: list[int], kinds: list[str]) -> None:
    """A figure needs every run of its experiment: name the first missing ones instead of plotting less."""
    have = set(zip(df["method_label"], df["eps"].astype(float), df["train_seed"].astype(int), df["model_kind"]))
    missing = [(m, e, s, k) for m in methods for e in eps for s in seeds for k in kinds
               if (m, float(e), int(s), k) not in have]
    if missing:
        shown = ", ".join(f"{m} eps={e:g} seed={s} {k}" for m, e, s, k in missing[:4])
        raise FastAdvError(f"results table lacks {len(missing)} run(s) the figure needs: {shown}"
                           + (" …" if len(missing) > 4 else ""))


def accuracy_vs_eps(df: pd.DataFrame, metric: str, out_pdf, scale: str, title: str) -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` vs training ε, one panel per model kind (Fig. 1)."""
    plt = _plt()
    agg = (df.groupby(["model_kind", "method_label", "eps"])[metric]
           .agg(["mean", "std", "count"]).reset_index())
    agg["std"] = agg["std"].fillna(0.0)
    kinds = [k for k in PANELS if k in set(agg["model_kind"])]
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 2.6), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        sub = agg[agg["model_kind"] == kind]
        for label in dict.fromkeys(df["method_label"]):
            d = sub[sub["method_label"] == label].sort_values("eps")
            name, colour = style(label)
            ax.plot(d["eps"], 100 * d["mean"], marker="o", ms=3, color=colour, label=name)
            ax.fill_between(d["eps"], 100 * (d["mean"] - d["std"]), 100 * (d["mean"] + d["std"]),
                            color=colour, alpha=0.2, lw=0)
        ax.set_title(PANELS[kind])
        ax.set_xlabel("training ε (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(title)
    axes[0][-1].legend(loc="best")
    fig.suptitle(f"{scale} scale" if scale != "paper" else "paper scale", fontsize=7, x=0.99, ha="right")
    save_figure(fig, out_pdf)
    plt.close(fig)
    return agg
