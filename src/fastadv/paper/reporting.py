"""Which measured numbers the figures and tables report, per scale.

The paper's reporting rules (Andriushchenko & Flammarion 2020, appendix, as the author quotes it in
tml-epfl/understanding-fast-adv-training issue #7): "We perform evaluation of standard accuracy using full test
sets, but we evaluate adversarial accuracy using 1,000 random points on each dataset". The official ``eval.py``
takes the first ``n_eval`` test points in their order (``data.get_loaders``: ``data[:n_ex]``, no shuffle) — the
points ``evaluate.n_points`` names here — and its PGD-50-10 counts, per point, the restart of highest final loss
(``utils.attack_pgd``; ``pgd_acc_max_loss`` here), not the worst case over restarts (``pgd_acc``).

At the paper scale a figure or table therefore reports clean accuracy on the whole test set and PGD under the
official rule, with the stricter worst case drawn beside as a second series and the first-N-points clean
accuracy kept as a column; the CPU scales evaluate more cheaply (worst case only, points already broken skipped;
clean on the evaluated points) and say so. A paper-scale table lacking the official numbers is an error, not a
silent substitute.
"""
from __future__ import annotations

import pandas as pd

from fastadv.errors import FastAdvError

PAPER_SCALE = "paper"


def reported(df: pd.DataFrame, scale: str) -> tuple[pd.DataFrame, str]:
    """(the table with ``clean_acc`` and ``pgd_acc`` holding the reported numbers, a one-line label of what they
    are). The evaluated points' clean accuracy and the worst case stay as ``clean_acc_points`` and
    ``pgd_acc_worst_case``."""
    out = df.assign(clean_acc_points=df["clean_acc"], pgd_acc_worst_case=df["pgd_acc"])
    n = ", ".join(str(int(v)) for v in sorted(df["n_points"].dropna().unique()))
    if scale != PAPER_SCALE:
        return out, (f"{scale} scale: clean and PGD-50-10 accuracy on the first {n} test points, PGD the worst case "
                     "over restarts")
    lacking = [c for c in ("clean_acc_full", "pgd_acc_max_loss") if df[c].isna().any()]
    if lacking:
        raise FastAdvError(f"the paper scale reports clean accuracy on the whole test set and PGD under the official "
                           f"restart rule, but the results lack {', '.join(lacking)}: evaluate with full_clean: true "
                           "and restart_rule: both (the paper scale's evaluate settings)")
    out = out.assign(clean_acc=df["clean_acc_full"], pgd_acc=df["pgd_acc_max_loss"])
    return out, (f"paper scale: clean on the whole test set; PGD-50-10 on the first {n} test points, per point the "
                 "restart of highest loss (the official rule; dotted: the worst case over restarts)")


def second_series(scale: str) -> str | None:
    """The column a figure draws beside its PGD accuracy (dotted): the worst case at the paper scale."""
    return "pgd_acc_worst_case" if scale == PAPER_SCALE else None
