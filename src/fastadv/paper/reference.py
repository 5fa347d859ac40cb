"""Published numbers, all in one store (``published_values.yaml``): the GradAlign paper's (Andriushchenko &
Flammarion, NeurIPS 2020), its author response's (printed numbers and values read off its Figs. 1 and 8, with
their read-off uncertainty) and third-party reproductions', one record per value, for overlays on our figures and
tables; and one record per published model file (a *checkpoint*, shaped like RobustBench's model_info: clean,
reported and AutoAttack accuracy) for the zoo table. Each carries its source; accuracies lie in [0, 100] %."""
from __future__ import annotations

import math

from importlib import resources

import pandas as pd
import yaml

from fastadv.errors import FastAdvError

FIELDS = {"dataset", "method", "eps", "model", "metric", "mean", "std", "seeds", "source", "origin"}
OPTIONAL = {"hardware", "uncertainty", "read_off", "figure"}
ORIGINS = {"paper", "third_party"}  # the GradAlign paper and its author response | another group's reproduction
METRICS = {"pgd_acc", "clean_acc", "autoattack_acc", "train_minutes"}
MODELS = {"final", "best", "unstated"}


# A checkpoint record: the file's name in the zoo (params.yaml zoo.models[*].name), what it was trained as, and
# its accuracies; ``method_values: true`` where the file's numbers are also the method's published values (no paper
# prints them: Wong et al.'s ImageNet model), so figures and tables get them as value rows too.
CHECKPOINT_FIELDS = {"checkpoint", "dataset", "method", "eps", "clean_acc", "reported_acc", "reported_metric",
                     "autoattack_acc", "origin", "source"}
CHECKPOINT_OPTIONAL = {"method_values"}


def _records(text: str | None) -> list[dict]:
    if text is None:
        text = resources.files("fastadv.paper").joinpath("published_values.yaml").read_text()
    return yaml.safe_load(text) or []


def load_checkpoints(text: str | None = None) -> dict[str, dict]:
    """The published model files' records by name (accuracies in %, None where not published)."""
    return _checkpoints(_records(text))


def _checkpoints(records: list[dict]) -> dict[str, dict]:
    out = {}
    for i, rec in enumerate(r for r in records if "checkpoint" in r):
        keys = set(rec)
        if not CHECKPOINT_FIELDS <= keys <= CHECKPOINT_FIELDS | CHECKPOINT_OPTIONAL:
            raise FastAdvError(f"published checkpoint #{i}: fields {sorted(keys)}; required {sorted(CHECKPOINT_FIELDS)}, "
                               f"optional {sorted(CHECKPOINT_OPTIONAL)}")
        if rec["checkpoint"] in out:
            raise FastAdvError(f"published checkpoint {rec['checkpoint']!r} is recorded twice")
        out[rec["checkpoint"]] = rec
    return out


def _method_rows(rec: dict) -> list[dict]:
    """A checkpoint's accuracies as value rows of its method (the reported one under the metric it names)."""
    reported = "pgd_acc" if rec["reported_metric"].lower().startswith("pgd") else "autoattack_acc"
    return [{"dataset": rec["dataset"], "method": rec["method"], "eps": rec["eps"], "model": "unstated",
             "metric": metric, "mean": rec[key], "std": None, "seeds": 1, "origin": rec["origin"],
             "source": f"{rec['source']}: {key}"}
            for key, metric in (("clean_acc", "clean_acc"), ("reported_acc", reported),
                                ("autoattack_acc", "autoattack_acc")) if rec[key] is not None]


def load_published(text: str | None = None) -> pd.DataFrame:
    """The published values as a table (accuracies in %); ``text``: another YAML list (tests)."""
    records = _records(text)
    rows = [r for r in records if "checkpoint" not in r]
    rows += [row for rec in _checkpoints(records).values() if rec.get("method_values") for row in _method_rows(rec)]
    for i, row in enumerate(rows):
        keys = set(row)
        if not FIELDS <= keys <= FIELDS | OPTIONAL:
            raise FastAdvError(f"published value #{i}: fields {sorted(keys)}; required {sorted(FIELDS)}, "
                               f"optional {sorted(OPTIONAL)}")
        if row["origin"] not in ORIGINS:
            raise FastAdvError(f"published value #{i}: origin {row['origin']!r}; valid: {', '.join(sorted(ORIGINS))}")
        if row["metric"] not in METRICS or row["model"] not in MODELS:
            raise FastAdvError(f"published value #{i}: metric {row['metric']!r} / model {row['model']!r}; "
                               f"valid metrics {sorted(METRICS)}, models {sorted(MODELS)}")
        if not row["source"]:
            raise FastAdvError(f"published value #{i} has no source")
        if row["metric"].endswith("_acc") and not 0 <= row["mean"] <= 100:
            raise FastAdvError(f"published value #{i}: {row['metric']} {row['mean']} %; valid: [0, 100]")
    return pd.DataFrame(rows, columns=sorted(FIELDS | OPTIONAL))


def published_points(published: pd.DataFrame, dataset: str, metric: str, model_kind: str,
                     methods: list[str], figure: str | None = None) -> pd.DataFrame:
    """The values to draw in one panel: ``metric`` of ``methods`` for ``model_kind`` (values whose source
    does not state the model kind are drawn in every panel). With ``figure``, values read off another
    figure of the paper are left out (Fig. 8 repeats Fig. 1's final-model accuracies)."""
    p = published
    keep = ((p["dataset"] == dataset) & (p["metric"] == metric) & p["method"].isin(methods)
            & p["model"].isin([model_kind, "unstated"]) & p["eps"].notna())
    if figure is not None:
        keep &= p["figure"].isna() | (p["figure"] == figure)
    return p[keep]


def published_value(published: pd.DataFrame, dataset: str, method: str, metric: str,
                    eps: float | None = None) -> tuple[float, float]:
    """(mean, std) of one published final-model (or unstated) value; NaN where none is published."""
    p = published
    keep = ((p["dataset"] == dataset) & (p["method"] == method) & (p["metric"] == metric)
            & p["model"].isin(["final", "unstated"]))
    keep &= p["eps"].isna() if eps is None else (p["eps"] == eps)
    if not keep.any():
        return float("nan"), float("nan")
    row = p[keep].iloc[0]
    return float(row["mean"]), float("nan") if pd.isna(row["std"]) else float(row["std"])


def paper_scale_table(zoo: list[dict] | None = None) -> str:
    """The README's paper-scale table (Markdown): per method the paper's PGD-50-10 at 8 and 16/255 (final model,
    early-stopped in brackets; read off its Fig. 1, ± the read-off uncertainty), AutoAttack at 8/255 from the
    author response and from RobustBench (the store's checkpoint record of each file params.yaml's ``zoo.models``
    lists), and fastadv's cell, which needs
    a GPU at this scale. A value hidden in the figure under another marker is "—", not guessed."""
    p = load_published()
    fig1 = p[(p["figure"] == "fig1") & (p["metric"] == "pgd_acc") & (p["dataset"] == "cifar10")]
    checkpoints = load_checkpoints()
    robustbench = {m["file"]: checkpoints[m["name"]]["autoattack_acc"] for m in zoo or []
                   if m.get("source") == "robustbench" and m.get("dataset") == "cifar10" and m["name"] in checkpoints}
    bench_of = {"gradalign": "Andriushchenko2020Understanding", "fgsm_rs": "Wong2020Fast"}

    def read_off(method: str, eps: float) -> str:
        got = {k: fig1[(fig1["method"] == method) & (fig1["eps"] == eps) & (fig1["model"] == k)]["mean"]
               for k in ("final", "best")}
        final, best = (f"{v.iloc[0]:.1f}" if len(v) else "—" for v in got.values())
        return f"{final} ({best})"

    rows = ["| method | PGD-50-10 at 8/255, paper | at 16/255, paper | AutoAttack at 8/255, paper | RobustBench "
            "| fastadv, paper scale |", "|---|---|---|---|---|---|"]
    for method in ("fgsm", "fgsm_rs", "free", "gradalign", "pgd2", "pgd10"):
        aa = published_value(p, "cifar10", method, "autoattack_acc", 8.0)
        aa_text = "—" if math.isnan(aa[0]) else f"{aa[0]:.2f} ± {aa[1]:.2f}"
        bench = robustbench.get(bench_of.get(method, ""))
        rows.append(f"| {method} | {read_off(method, 8.0)} | {read_off(method, 16.0)} | {aa_text} | "
                    f"{'—' if bench is None else f'{bench:.2f}'} | needs a GPU |")
    return "\n".join(rows)
