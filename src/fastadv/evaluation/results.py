"""Collect per-model evaluation results into one tidy table (one row per dataset/method/ε/seed/model kind)."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fastadv import atomic
from fastadv.errors import FastAdvError
from fastadv.config.params import default_params, read_params
from fastadv.evaluation.result_file import load_result
from fastadv.training.outcome import run_outcome

COLUMNS = ["dataset", "method", "method_label", "train_eps", "eps", "train_seed", "model_kind", "model_epoch",
           "n_points", "clean_acc_full", "clean_acc", "pgd_protocol", "pgd_acc", "pgd_acc_max_loss",
           "also_protocol", "also_n_points", "also_pgd_acc", "also_pgd_acc_max_loss", "autoattack_acc",
           "train_status", "co_epoch", "co_rule", "best_by", "train_seconds", "seconds_per_epoch", "final_grad_alignment",
           "eval_seconds", "device", "torch", "path"]


def result_row(res: dict, path: str, defaults: dict | None = None) -> dict:
    """One row of the table; ``defaults``: the monitor rule's keys for runs trained before they existed."""
    aa = res.get("autoattack")
    row = {
        "dataset": res["dataset"], "method": res["method"], "method_label": res["method_label"],
        "train_eps": res["train_eps"], "eps": res["eps"], "train_seed": res["train_seed"],
        "model_kind": res["model_kind"], "model_epoch": res["model_epoch"], "n_points": res["n_points"],
        "clean_acc_full": res["clean_acc_full"], "clean_acc": res["clean_acc"],
        "pgd_protocol": res["pgd"]["protocol"], "pgd_acc": res["pgd"]["acc"],
        "pgd_acc_max_loss": res["pgd"].get("acc_max_loss"),
        **_also(res.get("also")),
        "autoattack_acc": aa["acc"] if aa else None, "eval_seconds": res["seconds"]["total"],
        "device": res["hardware"]["gpu"] or res["hardware"]["device"], "torch": res["hardware"]["torch"],
        "path": path,
    }
    # The training run's own summary (beside the model file): time, alignment; its status and CO flag recomputed
    # from its history (the same for a run trained under today's rule; the rule's keys a run predates from params).
    run_dir = Path(res["model_path"]).parent
    if (run_dir / "summary.json").is_file():
        s = json.loads((run_dir / "summary.json").read_text())
        o = run_outcome(run_dir, defaults)
        row.update(train_status=o["status"], co_epoch=o["co_epoch"], train_seconds=s["train_seconds"],
                   best_by=s["config"]["monitor"].get("best_by", "pgd"),  # runs from before best_by: pgd, the only rule
                   co_rule="run config" + (f"; params: {', '.join(o['rule_from_defaults'])}"
                                           if o["rule_from_defaults"] else ""),
                   seconds_per_epoch=s["seconds_per_epoch"], final_grad_alignment=s["final"]["grad_alignment"])
    else:
        row.update(train_status=None, co_epoch=None, co_rule=None, best_by=None, train_seconds=None, seconds_per_epoch=None,
                   final_grad_alignment=None)
    for attack, acc in (aa or {}).get("acc_after", {}).items():
        row[f"aa_{attack.replace('-', '_')}_acc"] = acc
    if res.get("multitargeted"):
        row["multitargeted_acc"] = res["multitargeted"]["acc"]
    for steps, r in ((res.get("targeted") or {}).get("runs") or {}).items():
        row[f"targeted{steps}_acc"], row[f"targeted{steps}_success"] = r["acc"], r["success"]
    return row


def _also(also: dict | None) -> dict:
    """The second protocol's columns (evaluate.also_protocol), empty without one."""
    if not also:
        return dict.fromkeys(("also_protocol", "also_n_points", "also_pgd_acc", "also_pgd_acc_max_loss"))
    return {"also_protocol": also["protocol"], "also_n_points": also["n_points"], "also_pgd_acc": also["acc"],
            "also_pgd_acc_max_loss": also["acc_max_loss"]}


def collect(paths: list[str | Path]) -> pd.DataFrame:
    if not paths:
        raise FastAdvError("no result files given to collect")
    defaults = read_params(default_params())["train"]["monitor"]
    rows = [result_row(load_result(p), str(p), defaults) for p in paths]
    df = pd.DataFrame(rows)
    key = ["dataset", "method_label", "eps", "train_seed", "model_kind"]
    dup = df[df.duplicated(key, keep=False)]
    if len(dup):
        raise FastAdvError(f"two results for the same run: {dup.iloc[0][key].to_dict()} "
                           f"({', '.join(dup['path'].head(2))})")
    extra = [c for c in df.columns if c not in COLUMNS]
    return df[COLUMNS + sorted(extra)].sort_values(key).reset_index(drop=True)


def write_table(df: pd.DataFrame, out: str | Path) -> None:
    atomic.write_text(out, df.to_csv(index=False))
