"""Fig. 1's shape over seeds: at which ε each method overfits catastrophically (Andriushchenko & Flammarion 2020,
Fig. 1: FGSM collapses from ε ≈ 7–8/255, FGSM-RS from ≈ 9–10, Free AT ≈ 11–12; FGSM+GradAlign and PGD-10 never).

Two rules, each counted per run and per (method, ε) as the share of seeds:

* **CO flag** (``co``): the run's training history flagged catastrophic overfitting at some evaluation
  (fastadv.training.monitor: the test PGD accuracy below half its best earlier value while FGSM accuracy stays
  well above it; ``co_epoch`` in the results table) — also transient events it recovered from;
* **collapse at the end** (``collapsed``): the final model's PGD-50-10 accuracy below half the early-stopped
  model's — the rule the paper's own onset is computed with below, so the two compare like for like.

A run that never learned (``train_status`` ``not_learned``: its clean accuracy never clearly above chance,
fastadv.training.co_rule.learned) is counted apart: it had no robustness to lose, so it is neither an overfitting
seed nor a robust one. The onset of a method under a rule is the smallest ε at which at least half of its seeds
that learned meet it (None: at no ε of the grid). The paper's onset, from its Fig. 1 values (published_values.yaml,
digitised): the smallest ε at which the final model's PGD accuracy is below half the early-stopped model's — the
collapse the early-stopped panel shows Fig. 1's final models suffered (per-seed histories are not published).
"""
from __future__ import annotations

import math

import pandas as pd

ONSET_SHARE = 0.5  # at least half of the seeds overfit
COLLAPSE_RATIO = 0.5  # published: final-model PGD accuracy below half the early-stopped model's


def _collapsed(final: pd.Series, best: pd.Series) -> pd.Series:
    return final < COLLAPSE_RATIO * best


def per_seed(df: pd.DataFrame) -> pd.DataFrame:
    """One row per run (method, ε, seed): its status (completed | not_learned | diverged), the epoch of its first CO
    flag ("none"), whether it collapsed at the end, the final model's clean and PGD accuracy (%), the early-stopped
    model's epoch and PGD accuracy, the final gradient alignment and the training seconds — the numbers the shares
    and onsets are counted from."""
    keys = ["method_label", "eps", "train_seed"]
    final = df[df["model_kind"] == "final"].set_index(keys)
    best = df[df["model_kind"] == "best"].set_index(keys).reindex(final.index)
    return pd.DataFrame({
        "status": final["train_status"],
        "co_epoch": final["co_epoch"].map(lambda e: "none" if pd.isna(e) else f"{int(e)}"),
        "collapsed": _collapsed(final["pgd_acc"], best["pgd_acc"]),
        "clean_final": 100 * final["clean_acc"], "pgd_final": 100 * final["pgd_acc"],
        "best_epoch": best["model_epoch"], "pgd_best": 100 * best["pgd_acc"],
        "grad_alignment": final["final_grad_alignment"], "train_seconds": final["train_seconds"],
    }).sort_index().reset_index()


def co_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and ε: seeds that learned, seeds that did not (counted apart), seeds flagged CO and their share of
    those that learned, seeds collapsed at the end and their share, and the mean PGD accuracy of the final and the
    early-stopped models (%, all seeds)."""
    rows = []
    for (label, eps), all_seeds in per_seed(df).groupby(["method_label", "eps"], sort=True):
        g = all_seeds[all_seeds["status"] != "not_learned"]
        co, collapsed = int((g["co_epoch"] != "none").sum()), int(g["collapsed"].sum())
        rows.append({"method_label": label, "eps": float(eps), "seeds": len(g),
                     "not_learned": len(all_seeds) - len(g), "co_seeds": co,
                     "co_share": co / len(g) if len(g) else math.nan, "collapsed_seeds": collapsed,
                     "collapsed_share": collapsed / len(g) if len(g) else math.nan,
                     "pgd_final": all_seeds["pgd_final"].mean(), "pgd_best": all_seeds["pgd_best"].mean()})
    return pd.DataFrame(rows)


def onsets(shares: pd.DataFrame, rule: str = "co") -> dict[str, float | None]:
    """Method label → the smallest ε where at least half the seeds meet ``rule`` ("co": flagged, "collapsed":
    collapsed at the end; None: at no ε of the grid)."""
    out = {}
    for label, g in shares.groupby("method_label", sort=False):
        hit = g[g[f"{rule}_share"] >= ONSET_SHARE]["eps"]
        out[label] = float(hit.min()) if len(hit) else None
    return out


def published_onsets(published: pd.DataFrame, figure: str = "fig1") -> dict[str, float | None]:
    """Method → the paper's onset computed from its figure's digitised values (module docstring); methods with
    final and early-stopped values at no common ε are left out."""
    p = published[(published["figure"] == figure) & (published["metric"] == "pgd_acc")]
    out = {}
    for method, g in p.groupby("method"):
        final = g[g["model"] == "final"].set_index("eps")["mean"]
        best = g[g["model"] == "best"].set_index("eps")["mean"]
        common = sorted(set(final.index) & set(best.index))
        if common:
            hit = [e for e in common if final[e] < COLLAPSE_RATIO * best[e]]
            out[method] = float(hit[0]) if hit else None
    return out


def onset_table(shares: pd.DataFrame, published: pd.DataFrame | None) -> pd.DataFrame:
    """Per method: the grid, the onset under each rule ("none" when no ε of the grid reaches half the seeds), the
    paper's ("never" when Fig. 1 shows no collapse, "-" when the figure has no such method) and the shift in /255
    of the onset under the paper's rule (collapse at the end) from the paper's."""
    flagged, collapsed = onsets(shares, "co"), onsets(shares, "collapsed")
    paper = published_onsets(published) if published is not None else {}
    rows = []
    for label in flagged:
        grid = shares[shares["method_label"] == label]["eps"]
        ref, onset = paper.get(label, "-"), collapsed[label]
        shift = onset - ref if isinstance(onset, float) and isinstance(ref, float) else math.nan
        rows.append({"method_label": label, "eps_grid": f"{grid.min():g}-{grid.max():g}",
                     "onset_co_flag": _eps_or(flagged[label], "none"), "onset_collapse": _eps_or(onset, "none"),
                     "paper_onset": ref if ref == "-" else _eps_or(ref, "never"), "shift": shift})
    return pd.DataFrame(rows)


def _eps_or(eps: float | None, none: str) -> str:
    return none if eps is None else f"{eps:g}"
