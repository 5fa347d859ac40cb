"""A finished run's outcome recomputed from its ``history.csv``: the catastrophic-overfitting flags and whether it
learned (fastadv.training.monitor), under the run's own monitor rule — or, for the keys a run's config predates,
another one's (the flags are a function of the history: changing the rule needs no retraining).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from fastadv.data.registry import FOLDER_DATASETS
from fastadv.errors import FastAdvError
from fastadv.training.co_rule import co_flags, run_learned

RULE_KEYS = ("co_pgd_ratio", "co_min_gap", "co_alpha", "learned_clean_ratio")


def monitored_points(summary: dict, history: list[dict]) -> int:
    """How many test points the run monitored: recorded in its summary, or (runs from before it was) the config's
    ``monitor.test_points``, accepted only where every accuracy of the history is a whole number of such points."""
    if "monitor_points" in summary:
        return int(summary["monitor_points"])
    n = int(summary["config"]["monitor"]["test_points"])
    cols = ("test_clean_acc", "test_fgsm_acc", "test_pgd_acc")
    if any(abs(h[c] * n - round(h[c] * n)) > 1e-6 for h in history for c in cols):
        raise FastAdvError(f"the history's accuracies are not whole numbers of monitor.test_points = {n} points "
                           "(a test set smaller than that?) and the summary does not record how many were monitored")
    return n


def chance_of_data(data: dict, n: int) -> float:
    """What a constant prediction gets on the run's ``n`` monitored test points (the first n of the prepared test
    set), for runs whose summary predates ``monitor_chance``."""
    import torch  # only runs older than monitor_chance need the data (tables and curves import no torch)

    from fastadv.data.datasets import load_arrays
    from fastadv.training.monitor import chance_accuracy

    if data["dataset"] in FOLDER_DATASETS:
        raise FastAdvError(f"this {data['dataset']} run's summary does not record monitor_chance; an image folder's "
                           "labels are not read here: retrain it to get its status")
    labels = load_arrays(data["root"], data["dataset"])["y_test"][:n]
    return chance_accuracy(torch.tensor(labels, dtype=torch.long))  # a copy: the prepared file is mapped read-only


def run_outcome(run_dir: str | Path, defaults: dict | None = None) -> dict:
    """The run's status (completed | not_learned | diverged), first CO flag (epoch, iteration) and flags per history
    row recomputed under its config's monitor rule; ``defaults`` (a ``monitor`` section) supplies the rule's keys
    the config lacks, named in ``rule_from_defaults``. ``recorded``: what the run's summary says."""
    run_dir = Path(run_dir)
    try:
        summary = json.loads((run_dir / "summary.json").read_text())
        history = pd.read_csv(run_dir / "history.csv").to_dict("records")
    except FileNotFoundError as e:
        raise FastAdvError(f"{run_dir} is not a finished run ({Path(e.filename).name} missing)") from None
    cfg = summary["config"]
    rule = {k: cfg["monitor"][k] for k in RULE_KEYS if k in cfg["monitor"]}
    missing = [k for k in RULE_KEYS if k not in rule]
    if missing and (defaults is None or any(k not in defaults for k in missing)):
        raise FastAdvError(f"{run_dir}: its config has no monitor.{', monitor.'.join(missing)} (trained before "
                           "they existed); give defaults for them (fastadv co-flags takes them from a params file)")
    rule.update({k: defaults[k] for k in missing})
    n = monitored_points(summary, history)
    flags = co_flags(history, n, rule)
    first = next((h for h, f in zip(history, flags) if f), None)
    chance = summary["monitor_chance"] if "monitor_chance" in summary else chance_of_data(cfg["data"], n)
    status = summary["status"]
    if status != "diverged":
        status = "completed" if run_learned(history, n, chance, rule) else "not_learned"
    return {"status": status, "co_epoch": None if first is None else int(first["epoch"]),
            "co_iteration": None if first is None else int(first["iteration"]), "flags": flags,
            "monitor_points": n, "rule": rule, "rule_from_defaults": missing,
            "recorded": {"status": summary["status"], "co_epoch": summary["co_epoch"]}}


CURVE_COLUMNS = ("epoch", "iteration", "test_clean_acc", "test_pgd_acc", "grad_alignment")


def learning_curves(run_dirs: list[str | Path], defaults: dict | None = None) -> pd.DataFrame:
    """The runs' monitored statistics per evaluation, in long form for plotting (``dvc plots``: one line per run):
    ``run`` (its directory), method, ε, seed, its ``status``, :data:`CURVE_COLUMNS` from its history and ``co``
    (1 where the evaluation is flagged), status and flags recomputed as :func:`run_outcome` does, so that a curve
    and the results table never disagree about a run. A ``not_learned`` run keeps its flags here (the sweep
    leaves such runs out of its CO counts: fastadv.paper.sweep)."""
    frames = []
    for run_dir in run_dirs:
        o = run_outcome(run_dir, defaults)
        h = pd.read_csv(Path(run_dir) / "history.csv")
        cfg = json.loads((Path(run_dir) / "summary.json").read_text())["config"]
        frames.append(pd.DataFrame({"run": str(run_dir), "method": cfg["method"]["name"],
                                    "eps": cfg["method"]["eps"], "seed": cfg["runtime"]["seed"],
                                    "status": o["status"], **{c: h[c] for c in CURVE_COLUMNS},
                                    "co": [int(f) for f in o["flags"]]}))
    return pd.concat(frames, ignore_index=True)


def co_flags_table(run_dirs, defaults: dict) -> pd.DataFrame:
    """One row per finished run: status and CO flags recomputed from its history under ``defaults``' rule (the
    params file's ``train.monitor`` for keys its config predates), beside what its summary.json recorded."""
    rows = []
    for run_dir in run_dirs:
        o = run_outcome(run_dir, defaults)
        rows.append({"run": str(run_dir), "status": o["status"], "co_epoch": o["co_epoch"],
                     "co_iteration": o["co_iteration"], "flagged_evaluations": sum(o["flags"]),
                     "recorded_status": o["recorded"]["status"], "recorded_co_epoch": o["recorded"]["co_epoch"],
                     "monitor_points": o["monitor_points"],
                     "rule_from_params": ", ".join(o["rule_from_defaults"]) or "-"})
    return pd.DataFrame(rows).astype({"co_epoch": "Int64", "co_iteration": "Int64", "recorded_co_epoch": "Int64"})
