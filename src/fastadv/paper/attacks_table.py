"""The "stronger attacks" table (target ``attacks_table``): for the same final models, clean accuracy, PGD-50-10
under both restart rules, standard AutoAttack after each of its attacks and MultiTargeted (Gowal et al. 2019), mean
± std over seeds, with the author response's AutoAttack numbers beside (FGSM+GradAlign 44.54 ± 0.24 vs FGSM-RS
42.80 ± 0.58 at 8/255; from the store of published values). Reviewer 2 of the GradAlign paper asked for "stronger
attacks, e.g., AutoAttack or MultiTargeted"."""
from __future__ import annotations

import pandas as pd

from fastadv.errors import FastAdvError
from fastadv.methods.registry import label_style
from fastadv.paper.reference import published_value

# (results column, what the table calls it), in the order attacks are applied.
ATTACK_COLUMNS = (
    ("clean_acc", "clean"),
    ("pgd_acc", "PGD-50-10 (worst case over restarts)"),
    ("pgd_acc_max_loss", "PGD-50-10 (official rule: the restart of highest loss)"),
    ("aa_apgd_ce_acc", "AutoAttack after APGD-CE"),
    ("aa_apgd_t_acc", "… after APGD-T"),
    ("aa_fab_t_acc", "… after FAB-T"),
    ("aa_square_acc", "… after Square = AutoAttack"),
    ("multitargeted_acc", "MultiTargeted"),
)


def stronger_attacks_table(df: pd.DataFrame, eps: float, published: pd.DataFrame | None, dataset: str) -> pd.DataFrame:
    """One row per method at ``eps`` (final models): seeds, then ``<column>_mean`` / ``<column>_std`` (%) for every
    attack of :data:`ATTACK_COLUMNS`, and the published AutoAttack accuracy where there is one (NaN elsewhere).
    A results table without one of the attacks is refused, naming the column and the setting that adds it."""
    missing = [c for c, _ in ATTACK_COLUMNS if c not in df.columns or df[c].isna().any()]
    if missing:
        raise FastAdvError(f"the stronger-attacks table needs every attack for every model; the results lack "
                           f"{', '.join(missing)} (the experiment's evaluate needs restart_rule: both, autoattack: "
                           "true and multitargeted: true)")
    rows = []
    for label, g in df[(df["eps"] == eps) & (df["model_kind"] == "final")].groupby("method_label", sort=False):
        row = {"method": label_style(label)[0], "method_label": label, "seeds": len(g)}
        for col, _ in ATTACK_COLUMNS:
            vals = 100 * g[col].astype(float)
            row[f"{col}_mean"], row[f"{col}_std"] = vals.mean(), vals.std(ddof=1) if len(vals) > 1 else 0.0
        mean, std = (published_value(published, dataset, label, "autoattack_acc", eps) if published is not None
                     else (float("nan"), float("nan")))
        row["published_autoattack_acc_mean"], row["published_autoattack_acc_std"] = mean, std
        rows.append(row)
    return pd.DataFrame(rows)


def caption(eps: float, note: str, hardware: str) -> str:
    names = "; ".join(f"{c}: {what}" for c, what in ATTACK_COLUMNS)
    return (f"Accuracy (%) under stronger attacks at eps = {eps:g}/255, final models, mean ± std over seeds, the same "
            f"points for every attack ({note}; {hardware}). Columns: {names}; published: the author response's "
            "AutoAttack accuracy.")
