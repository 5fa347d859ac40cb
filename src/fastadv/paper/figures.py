"""Figures from the tidy results table. Each function returns the data it drew (for tests)
and writes PDF (vector) + PNG atomically. Colours are fixed per method across figures."""
from __future__ import annotations

import textwrap

from pathlib import Path

import pandas as pd

from fastadv import atomic
from fastadv.errors import FastAdvError
from fastadv.methods.registry import label_style
from fastadv.paper.reference import published_points, published_value

PANELS = {"final": "final model", "best": "early-stopped model"}


def style(label: str) -> tuple[str, str]:
    """Display name and colour of a method label, the same in every figure (each method's SPEC.styles)."""
    return label_style(label)


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


ORIGIN_MARKERS = {"paper": ("s", "published (paper)"), "third_party": ("^", "third-party reproduction")}


def draw_published(ax, ref: pd.DataFrame) -> None:
    """Published values as faded open markers in the method's colour with their ± std: squares for the
    paper, triangles for a third party."""
    for _, r in ref.iterrows():
        marker, _ = ORIGIN_MARKERS[r["origin"]]
        ax.errorbar(r["eps"], r["mean"], yerr=0.0 if pd.isna(r["std"]) else r["std"], marker=marker, ms=4,
                    mfc="none", color=style(r["method"])[1], alpha=0.45, capsize=2, lw=0.8)


def accuracy_vs_eps(df: pd.DataFrame, metric: str, out_pdf, scale: str, title: str,
                    factor: float = 100.0, published: pd.DataFrame | None = None,
                    dataset: str = "cifar10", figure: str | None = "fig1", second: str | None = None,
                    note: str | None = None) -> pd.DataFrame:
    """Mean ± std over seeds of ``metric`` (× ``factor``) vs training ε, one panel per model kind (Fig. 1).

    ``published``: the paper's values in % (``reference.load_published``), drawn as faded open
    markers in the method's colour with their ±std. ``second``: another column drawn dotted beside (the paper
    scale's worst case over restarts, fastadv.paper.reporting); ``note``: what the numbers are, printed on the
    figure. Returns every number drawn, ours with ``source`` "measured" (and "measured: <second>"), the paper's
    with "published"."""
    plt = _plt()
    agg = _seed_stats(df, metric)
    kinds = [k for k in PANELS if k in set(agg["model_kind"])]
    drawn = [agg.assign(source="measured")] + ([_seed_stats(df, second).assign(source=f"measured: {second}")]
                                               if second else [])
    labels = list(dict.fromkeys(df["method_label"]))
    fig, axes = plt.subplots(1, len(kinds), figsize=(3.4 * len(kinds), 2.6), sharey=True, squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for d in drawn:
            _draw_measured(ax, d[d["model_kind"] == kind], labels, factor, dotted=d is not drawn[0])
        if published is not None:
            ref = published_points(published, dataset, metric, kind, labels, figure)
            draw_published(ax, ref)
            drawn.append(ref.rename(columns={"method": "method_label"}).assign(
                model_kind=kind, mean=ref["mean"] / 100, std=ref["std"] / 100, count=ref["seeds"], diverged=0,
                not_learned=0,
                source="published", origin=ref["origin"])[list(agg.columns) + ["source", "origin"]])
        ax.set_title(PANELS[kind])
        ax.set_xlabel("training ε (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel(title)
    axes[0][-1].legend(loc="best")
    origins = set(pd.concat([d for d in drawn if "origin" in d])["origin"]) if published is not None else set()
    text = (note or f"{scale} scale") + "".join(f"; open {'squares' if o == 'paper' else 'triangles'}: "
                                                f"{ORIGIN_MARKERS[o][1]}" for o in sorted(origins))
    text += "; ×: a run diverged" if (agg["diverged"] > 0).any() else ""
    text += "; open diamonds: a run did not learn (clean accuracy never clearly above chance)" if (agg["not_learned"] > 0).any() else ""
    # Wrapped to the figure's width: one long line would widen the saved (tight) box and leave a blank margin.
    fig.suptitle(textwrap.fill(text, width=int(fig.get_figwidth() * 24)), fontsize=6, y=1.0, va="bottom")
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)


def _seed_stats(df: pd.DataFrame, metric: str) -> pd.DataFrame:
    """Mean, std and count over seeds of ``metric`` per (model kind, method, ε), how many runs diverged (drawn and
    marked: their model is the last finite one, not a trained one) and how many did not learn (drawn and marked:
    fastadv.training.co_rule.learned)."""
    keys = ["model_kind", "method_label", "eps"]
    agg = df.groupby(keys)[metric].agg(["mean", "std", "count"]).reset_index()
    agg["std"] = agg["std"].fillna(0.0)
    status = df["train_status"] if "train_status" in df else pd.Series("completed", index=df.index)
    for name in ("diverged", "not_learned"):
        agg[name] = (status == name).groupby([df[k] for k in keys]).sum().values
    return agg


def _draw_measured(ax, sub: pd.DataFrame, labels: list, factor: float, dotted: bool = False) -> None:
    for label in labels:
        d = sub[sub["method_label"] == label].sort_values("eps")
        name, colour = style(label)
        if dotted:  # a second series: the line only, no band, no legend entry
            ax.plot(d["eps"], factor * d["mean"], ls=":", lw=0.9, color=colour)
            continue
        ax.plot(d["eps"], factor * d["mean"], marker="o", ms=3, color=colour, label=name)
        ax.fill_between(d["eps"], factor * (d["mean"] - d["std"]), factor * (d["mean"] + d["std"]),
                        color=colour, alpha=0.2, lw=0)
        bad = d[d["diverged"] > 0]
        ax.scatter(bad["eps"], factor * bad["mean"], marker="x", s=30, color="black", zorder=4)
        unlearned = d[d["not_learned"] > 0]
        ax.scatter(unlearned["eps"], factor * unlearned["mean"], marker="D", s=30, facecolors="none",
                   edgecolors="black", zorder=4)


def draw_curves(top, bottom, h: pd.DataFrame, x: str, label: str) -> None:
    """One method's test PGD accuracy (``top``) and gradient alignment (``bottom``) against column ``x`` of its
    history, in its colour; evaluations flagged as catastrophic overfitting marked ×."""
    name, colour = style(label)
    top.plot(h[x], 100 * h["test_pgd_acc"], color=colour, label=name)
    bottom.plot(h[x], h["grad_alignment"], color=colour)
    co = h[h["co"].astype(bool)]
    top.scatter(co[x], 100 * co["test_pgd_acc"], marker="x", color=colour, s=18, zorder=3)
    bottom.scatter(co[x], co["grad_alignment"], marker="x", color=colour, s=18, zorder=3)


def learning_curves(histories: dict[str, pd.DataFrame], out_pdf, scale: str, eps: float,
                    note: str | None = None) -> pd.DataFrame:
    """Rebuttal Fig. A: test PGD accuracy (top) and gradient alignment (bottom) per evaluation per method;
    evaluations flagged as catastrophic overfitting are marked ×. ``histories``: label → history.csv.
    ``note``: a footnote (e.g. which methods a smaller scale leaves out)."""
    plt = _plt()
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(3.4, 4.2), sharex=True)
    drawn = []
    for label, h in histories.items():
        draw_curves(top, bottom, h, "epoch", label)
        drawn.append(h[["epoch", "test_pgd_acc", "grad_alignment", "co"]].assign(method_label=label))
    top.set_ylabel("PGD accuracy (%)")
    bottom.set_ylabel("gradient alignment")
    bottom.set_xlabel("epoch")
    top.set_title(f"ε = {eps:g}/255, {scale} scale (× = catastrophic overfitting)")
    top.legend(loc="best")
    if note:
        fig.text(0.01, 0.0, note, fontsize=5, ha="left", va="top", wrap=True)
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)


def runtime_table(df: pd.DataFrame, published: pd.DataFrame | None = None, dataset: str = "cifar10") -> pd.DataFrame:
    """Training time per method (mean ± std over its runs) and its ratio to FGSM on the same hardware;
    with ``published``, also the ratio the paper's authors measured (their hardware)."""
    final = df[df["model_kind"] == df["model_kind"].iloc[0]]
    t = (final.groupby("method_label")["train_seconds"].agg(["mean", "std", "count"]).reset_index()
         .rename(columns={"mean": "train_seconds_mean", "std": "train_seconds_std", "count": "runs"}))
    if "fgsm" not in set(t["method_label"]):
        raise FastAdvError("runtime table needs FGSM runs for the ratio; valid methods here: "
                           + ", ".join(t["method_label"]))
    base = float(t.loc[t["method_label"] == "fgsm", "train_seconds_mean"].iloc[0])
    t["ratio_to_fgsm"] = t["train_seconds_mean"] / base
    t["method"] = [style(m)[0] for m in t["method_label"]]
    cols = ["method", "method_label", "runs", "train_seconds_mean", "train_seconds_std", "ratio_to_fgsm"]
    if published is not None:
        fgsm_minutes = published_value(published, dataset, "fgsm", "train_minutes")[0]
        t["published_ratio_to_fgsm"] = [published_value(published, dataset, m, "train_minutes")[0] / fgsm_minutes
                                         for m in t["method_label"]]
        cols.append("published_ratio_to_fgsm")
    return t[cols]


def accuracy_table(df: pd.DataFrame, eps: float, published: pd.DataFrame | None = None,
                   dataset: str = "cifar10") -> pd.DataFrame:
    """Clean / PGD-50-10 / AutoAttack accuracy (%) at ``eps``, mean ± std over seeds, per method;
    with ``published``, also the paper's values where it printed them (NaN elsewhere)."""
    sub = df[(df["eps"] == eps) & (df["model_kind"] == "final")]
    rows = []
    for label, g in sub.groupby("method_label", sort=False):
        row = {"method": style(label)[0], "method_label": label, "seeds": len(g)}
        for col in ("clean_acc", "pgd_acc", "autoattack_acc"):
            vals = 100 * g[col].astype(float)
            row[f"{col}_mean"], row[f"{col}_std"] = vals.mean(), vals.std(ddof=1) if len(vals) > 1 else 0.0
        if published is not None:
            for col in ("clean_acc", "pgd_acc", "autoattack_acc"):
                row[f"published_{col}_mean"], row[f"published_{col}_std"] = published_value(
                    published, dataset, label, col, eps)
        rows.append(row)
    return pd.DataFrame(rows)


def write_table(table: pd.DataFrame, out_md, caption: str, latex: bool = False) -> None:
    """CSV + Markdown (+ LaTeX) beside ``out_md``, all atomically; the caption states hardware and scale."""
    out_md = Path(out_md)
    atomic.write_text(out_md.with_suffix(".csv"), table.to_csv(index=False))
    atomic.write_text(out_md, markdown(table, caption))
    if latex:
        atomic.write_text(out_md.with_suffix(".tex"), table.round(3).to_latex(index=False, caption=caption))


def markdown(table: pd.DataFrame, caption: str) -> str:
    """A caption and the table in Markdown (values rounded to 3 decimals)."""
    shown = table.round(3)
    md = f"{caption}\n\n| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    return md + "".join("| " + " | ".join(str(v) for v in r) + " |\n" for r in shown.itertuples(index=False))


def training_metrics(histories: dict[str, pd.DataFrame], out_pdf, scale: str, eps: float) -> pd.DataFrame:
    """The paper's Figs. 4 and 11: per method, on the fixed test points and at every evaluation,
    (a) FGSM (solid) and PGD (dashed) accuracy, (b) FGSM and PGD loss, (c) cos(∇ℓ(x), ∇ℓ(x+η))
    (solid) and cos(δ_FGSM, δ_PGD) (dashed); × marks evaluations flagged as catastrophic overfitting.
    ``histories``: method label → history.csv. Returns every number drawn (long form)."""
    plt = _plt()
    panels = [("accuracy (%)", "test_fgsm_acc", "test_pgd_acc", 100.0),
              ("loss", "test_fgsm_loss", "test_pgd_loss", 1.0),
              ("cosine", "grad_alignment", "test_cos_fgsm_pgd", 1.0)]
    fig, axes = plt.subplots(1, 3, figsize=(10.2, 2.6))
    drawn = []
    for label, h in histories.items():
        name, colour = style(label)
        co = h["co"].astype(bool)
        for ax, (ylabel, solid, dashed, factor) in zip(axes, panels):
            for col, ls in ((solid, "-"), (dashed, "--")):
                ax.plot(h["epochs"], factor * h[col], ls=ls, color=colour, lw=1,
                        label=f"{name}: {COLUMN_NAMES[col]}")
                drawn.append(pd.DataFrame({"method_label": label, "epochs": h["epochs"], "metric": col,
                                           "value": factor * h[col], "co": co}))
            ax.scatter(h.loc[co, "epochs"], factor * h.loc[co, solid], marker="x", color=colour, s=14, zorder=3)
            ax.set_ylabel(ylabel)
    for ax in axes:
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
    axes[0].legend(loc="best", fontsize=5)
    axes[2].legend(loc="best", fontsize=5)
    fig.suptitle(f"ε = {eps:g}/255, test points, {scale} scale (× = catastrophic overfitting)", fontsize=7,
                 x=0.99, ha="right")
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)


COLUMN_NAMES = {"test_fgsm_acc": "FGSM", "test_pgd_acc": "PGD", "test_fgsm_loss": "FGSM", "test_pgd_loss": "PGD",
                "grad_alignment": "cos(∇ℓ(x), ∇ℓ(x+η))", "test_cos_fgsm_pgd": "cos(δ_FGSM, δ_PGD)"}


def clean_and_robust_vs_eps(tables: dict[str, pd.DataFrame], out_pdf, scale: str,
                            published: pd.DataFrame | None = None, note: str | None = None) -> pd.DataFrame:
    """The paper's Fig. 8: per dataset panel, clean (dashed) and PGD-50-10 (solid) accuracy of the final
    models vs training ε, mean ± std over seeds (shaded); published values (read off Fig. 8) as faded
    open markers. ``tables``: dataset → tidy results. Returns every number drawn."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(tables), figsize=(3.6 * len(tables), 2.8), sharey=True, squeeze=False)
    drawn = []
    for ax, (dataset, df) in zip(axes[0], tables.items()):
        final = df[df["model_kind"] == "final"]
        labels = list(dict.fromkeys(final["method_label"]))
        for metric, ls in (("pgd_acc", "-"), ("clean_acc", "--")):
            agg = final.groupby(["method_label", "eps"])[metric].agg(["mean", "std", "count"]).reset_index()
            agg["std"] = agg["std"].fillna(0.0)
            for label in labels:
                d = agg[agg["method_label"] == label].sort_values("eps")
                name, colour = style(label)
                ax.plot(d["eps"], 100 * d["mean"], ls=ls, marker="o", ms=2.5, color=colour,
                        label=name if metric == "pgd_acc" else None)
                ax.fill_between(d["eps"], 100 * (d["mean"] - d["std"]), 100 * (d["mean"] + d["std"]), color=colour,
                                alpha=0.15, lw=0)
            drawn.append(agg.assign(dataset=dataset, metric=metric, source="measured"))
            if published is not None:
                ref = published_points(published, dataset, metric, "final", labels, "fig8")
                draw_published(ax, ref)
                drawn.append(ref.rename(columns={"method": "method_label"}).assign(
                    mean=ref["mean"] / 100, std=ref["std"] / 100, count=ref["seeds"], dataset=dataset, metric=metric,
                    source="published")[["method_label", "eps", "mean", "std", "count", "dataset", "metric", "source",
                                         "origin"]])
        ax.set_title(f"{dataset}: clean (dashed), PGD-50-10 (solid)")
        ax.set_xlabel("training ε (/255)")
        ax.grid(alpha=0.3)
    axes[0][0].set_ylabel("accuracy (%)")
    axes[0][-1].legend(loc="best")
    fig.suptitle(f"{note or scale + ' scale'}; open markers: published values (Fig. 8 of the paper and a third "
                 "party)", fontsize=6, x=0.99, ha="right")
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)


def _mean_std(values: pd.Series) -> tuple[float, float]:
    v = 100 * values.astype(float)
    return float(v.mean()), float(v.std(ddof=1)) if len(v) > 1 else 0.0


def methods_table(df: pd.DataFrame) -> pd.DataFrame:
    """The author response's Table 7: per method, ε and model kind, clean and PGD-50-10 accuracy (%, mean ±
    std over seeds) and the training time relative to FGSM's at the same ε (same hardware)."""
    fgsm = df[(df["method_label"] == "fgsm") & (df["model_kind"] == "final")].groupby("eps")["train_seconds"].mean()
    rows = []
    for (label, eps, kind), g in df.groupby(["method_label", "eps", "model_kind"], sort=False):
        clean, pgd = _mean_std(g["clean_acc"]), _mean_std(g["pgd_acc"])
        rows.append({"method": style(label)[0], "method_label": label, "eps": eps, "model_kind": kind,
                     "seeds": len(g), "clean_mean": clean[0], "clean_std": clean[1], "pgd_mean": pgd[0],
                     "pgd_std": pgd[1],
                     "time_vs_fgsm": float(g["train_seconds"].mean() / fgsm[eps]) if eps in fgsm else float("nan")})
    return pd.DataFrame(rows).sort_values(["eps", "model_kind", "method_label"], ignore_index=True)


def vs_published_table(df: pd.DataFrame, published: pd.DataFrame, dataset: str) -> pd.DataFrame:
    """Every (method, ε, model kind, metric) with both a measured and a published value: the measured mean ±
    std over seeds, the published value (paper and third party in separate rows) and the difference, in %."""
    rows = []
    for (label, eps, kind), g in df.groupby(["method_label", "eps", "model_kind"]):
        for metric in ("pgd_acc", "clean_acc", "autoattack_acc"):
            if metric not in g or g[metric].isna().all():
                continue
            mean, std = _mean_std(g[metric])
            ref = published_points(published, dataset, metric, kind, [label])
            for _, r in ref[ref["eps"] == eps].iterrows():
                rows.append({"method_label": label, "eps": eps, "model_kind": kind, "metric": metric,
                             "measured_mean": mean, "measured_std": std, "seeds": len(g), "published_mean": r["mean"],
                             "published_std": r["std"], "published_model": r["model"], "origin": r["origin"],
                             "figure": r["figure"], "difference": mean - r["mean"]})
    cols = ["method_label", "eps", "model_kind", "metric", "measured_mean", "measured_std", "seeds", "published_mean",
            "published_std", "published_model", "origin", "figure", "difference"]
    return pd.DataFrame(rows, columns=cols)


def published_figures(published: pd.DataFrame, out_pdf) -> pd.DataFrame:
    """The values read off the paper's Figs. 1 and 8, redrawn (not the official images): Fig. 1's two panels
    (PGD-50-10, final and early-stopped models) and Fig. 8's (clean dashed, PGD-50-10 solid; CIFAR-10,
    SVHN), each point with its read-off uncertainty — to compare with the official figures by eye."""
    plt = _plt()
    panels = [("fig1", "cifar10", "final", "Fig. 1 left: final models"),
              ("fig1", "cifar10", "best", "Fig. 1 right: early stopping"),
              ("fig8", "cifar10", "final", "Fig. 8: CIFAR-10"), ("fig8", "svhn", "final", "Fig. 8: SVHN")]
    fig, axes = plt.subplots(1, 4, figsize=(13.6, 2.8))
    drawn = []
    for ax, (figure, dataset, model, title) in zip(axes, panels):
        sub = published[(published["figure"] == figure) & (published["dataset"] == dataset)
                        & (published["model"] == model)]
        for (method, metric), d in sub.groupby(["method", "metric"]):
            d = d.sort_values("eps")
            name, colour = style(method)
            ax.errorbar(d["eps"], d["mean"], yerr=d["uncertainty"], ls="--" if metric == "clean_acc" else "-",
                        marker="o", ms=3, color=colour, lw=0.8, capsize=1.5,
                        label=name if metric == "pgd_acc" else None)
        drawn.append(sub)
        ax.set_title(title)
        ax.set_xlabel("ε (/255)")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("accuracy (%)")
    axes[0].legend(loc="best", fontsize=5)
    fig.suptitle("published values read off the paper's figures (fastadv digitize); hidden markers are left out",
                 fontsize=7, x=0.99, ha="right")
    save_figure(fig, out_pdf)
    plt.close(fig)
    return pd.concat(drawn, ignore_index=True)
