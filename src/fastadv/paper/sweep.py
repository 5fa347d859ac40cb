"""Fig. 1's shape over seeds: at which ε each method overfits catastrophically (Andriushchenko & Flammarion 2020,
Fig. 1: FGSM collapses from ε ≈ 7–8/255, FGSM-RS from ≈ 9–10, Free AT ≈ 11–12; FGSM+GradAlign and PGD-10 never).

Measured: a run overfits when its training history flagged CO (fastadv.training.monitor: the test PGD accuracy
below half its best earlier value while FGSM accuracy stays well above it; ``co_epoch`` in the results table).
The onset of a method is the smallest ε at which at least half of its seeds overfit (None: at no ε of the grid).

Published: the same rule cannot be read off a figure, so the paper's onset is computed from its Fig. 1 values
(published_values.yaml, digitised): the smallest ε at which the final model's PGD accuracy is below half the
early-stopped model's at that ε — the collapse the early-stopped panel shows Fig. 1's final models suffered.
"""
from __future__ import annotations

import math

import pandas as pd

ONSET_SHARE = 0.5  # at least half of the seeds overfit
COLLAPSE_RATIO = 0.5  # published: final-model PGD accuracy below half the early-stopped model's


def co_shares(df: pd.DataFrame) -> pd.DataFrame:
    """Per method and ε (one row per run: the final models): seeds, seeds that overfit, their share, and the mean
    PGD accuracy of the final and the early-stopped models (%)."""
    rows = []
    final = df[df["model_kind"] == "final"]
    for (label, eps), g in final.groupby(["method_label", "eps"], sort=True):
        best = df[(df["model_kind"] == "best") & (df["method_label"] == label) & (df["eps"] == eps)]
        co = int(g["co_epoch"].notna().sum())
        rows.append({"method_label": label, "eps": float(eps), "seeds": len(g), "co_seeds": co,
                     "co_share": co / len(g), "pgd_final": 100 * g["pgd_acc"].mean(),
                     "pgd_best": 100 * best["pgd_acc"].mean() if len(best) else math.nan})
    return pd.DataFrame(rows)


def onsets(shares: pd.DataFrame) -> dict[str, float | None]:
    """Method label → the smallest ε where at least half the seeds overfit (None: none of the grid)."""
    out = {}
    for label, g in shares.groupby("method_label", sort=False):
        hit = g[g["co_share"] >= ONSET_SHARE]["eps"]
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
    """Per method: the grid, the measured onset ("none" when no ε of the grid reaches half the seeds), the paper's
    ("never" when Fig. 1 shows no collapse, "-" when the figure has no such method) and the shift in /255."""
    ours, paper = onsets(shares), published_onsets(published) if published is not None else {}
    rows = []
    for label, onset in ours.items():
        grid = shares[shares["method_label"] == label]["eps"]
        ref = paper.get(label, "-")
        shift = onset - ref if isinstance(onset, float) and isinstance(ref, float) else math.nan
        rows.append({"method_label": label, "eps_grid": f"{grid.min():g}-{grid.max():g}",
                     "onset": "none" if onset is None else f"{onset:g}",
                     "paper_onset": "never" if ref is None else ref if ref == "-" else f"{ref:g}", "shift": shift})
    return pd.DataFrame(rows)
