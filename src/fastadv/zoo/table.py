"""The zoo table (``results/<scale>/zoo.md`` + ``.csv``): each model listed in params.yaml ``zoo:`` imported
(``fastadv import``), evaluated with the paper's protocol — clean, PGD-50-10 under both restart rules — and
AutoAttack (``fastadv evaluate``, the zoo's evaluation config), beside the values published for it and the
differences. A listed file that is absent is a row "not downloaded: <how>"; one that cannot be read is a row
saying why (and the command then fails, after writing the table). Converted files and result JSONs are kept in
``<out dir>/zoo/``; a result whose model file (SHA-256), ε and evaluation config are unchanged is reused."""
from __future__ import annotations

import csv
import io
import json
from pathlib import Path

from fastadv import atomic
from fastadv.config.zoo import listed_path
from fastadv.errors import FastAdvError
from fastadv.evaluation.protocol import evaluate
from fastadv.zoo.registry import import_model

COLUMNS = ("name", "source", "dataset", "eps", "status", "n_points", "clean", "published_clean", "clean_diff",
           "pgd50_10", "pgd50_10_max_loss", "published_reported", "reported_metric", "reported_diff", "autoattack",
           "published_autoattack", "autoattack_diff", "published_source")


def _evaluated(entry: dict, zoo: dict, work: Path, data_root) -> dict:
    src = entry["file"] if entry["source"] == "robustbench" else str(listed_path(entry, zoo["dir"]))
    model_file, result_file = work / f"{entry['name']}.pt", work / f"{entry['name']}.json"
    origin = import_model(entry["source"], src, model_file, which=entry["which"], dataset=entry["dataset"],
                          eps=entry["eps"], model_dir=zoo["dir"])
    if result_file.is_file():
        old = json.loads(result_file.read_text())
        if (old.get("origin") or {}).get("sha256") == origin["sha256"] and old.get("eps") == entry["eps"] \
                and old.get("eval_config") == {**zoo["evaluate"], "threads": old["eval_config"].get("threads")}:
            return old  # the same file, ε and protocol: the result stands
    return evaluate(model_file, result_file, zoo["evaluate"], eps255=entry["eps"], data_root=data_root)


def _diff(measured, published):
    return None if measured is None or published is None else round(measured - published, 2)


def _row(entry: dict, status: str, res: dict | None, pub: dict | None) -> dict:
    pub = {"clean_acc": None, "reported_acc": None, "reported_metric": None, "autoattack_acc": None, "source": "none",
           **(pub or {})}
    pct = (lambda v: None if v is None else round(100 * v, 2))
    clean = pct(res["clean_acc"]) if res else None
    pgd = pct(res["pgd"]["acc"]) if res else None
    aa = pct(res["autoattack"]["acc"]) if res and res["autoattack"] else None
    reported_is_pgd = (pub["reported_metric"] or "").lower().startswith("pgd")
    return {"name": entry["name"], "source": entry["source"], "dataset": entry["dataset"], "eps": entry["eps"],
            "status": status, "n_points": res["n_points"] if res else None, "clean": clean,
            "published_clean": pub["clean_acc"], "clean_diff": _diff(clean, pub["clean_acc"]), "pgd50_10": pgd,
            "pgd50_10_max_loss": pct(res["pgd"]["acc_max_loss"]) if res else None,
            "published_reported": pub["reported_acc"], "reported_metric": pub["reported_metric"],
            "reported_diff": _diff(pgd if reported_is_pgd else aa, pub["reported_acc"]), "autoattack": aa,
            "published_autoattack": pub["autoattack_acc"], "autoattack_diff": _diff(aa, pub["autoattack_acc"]),
            "published_source": pub["source"]}


def zoo_table(zoo: dict, out: str | Path, data_root: str | Path = "data", published: dict | None = None) -> list[dict]:
    """Evaluate every listed model that is there; write ``out`` (Markdown) and the CSV beside it; the rows.
    ``published``: the published numbers of the files by entry name (fastadv.paper.reference.load_checkpoints)."""
    published = published or {}
    out = Path(out)
    work = out.with_suffix("")  # results/<scale>/zoo/: converted files and results
    rows, failures = [], []
    for entry in zoo["models"]:
        path, pub = listed_path(entry, zoo["dir"]), published.get(entry["name"])
        if not path.is_file():
            rows.append(_row(entry, f"not downloaded: {entry['how']} (expected at {path})", None, pub))
            continue
        try:
            rows.append(_row(entry, "evaluated", _evaluated(entry, zoo, work, data_root), pub))
        except FastAdvError as e:
            rows.append(_row(entry, f"not evaluated: {e}", None, pub))
            failures.append(f"{entry['name']}: {e}")
    _write(rows, out, zoo)
    if failures:
        raise FastAdvError(f"zoo table written to {out}, but {len(failures)} listed file(s) could not be read; "
                           f"first: {failures[0]}")
    return rows


def _write(rows: list[dict], out: Path, zoo: dict) -> None:
    buf = io.StringIO()
    w = csv.DictWriter(buf, COLUMNS, lineterminator="\n")
    w.writeheader()
    w.writerows(rows)
    atomic.write_text(out.with_suffix(".csv"), buf.getvalue())
    cfg = zoo["evaluate"]
    show = ("name", "dataset", "eps", "status", "clean", "published_clean", "clean_diff", "pgd50_10",
            "pgd50_10_max_loss", "published_reported", "reported_metric", "reported_diff", "autoattack",
            "published_autoattack", "autoattack_diff", "published_source")
    fmt = (lambda v: "—" if v is None else f"{v:g}" if isinstance(v, float) else str(v).replace("|", "/"))
    lines = [f"Published models evaluated with the paper's protocol (accuracy in %; {cfg['protocol']}: worst case "
             f"over restarts, and the official max-loss rule; AutoAttack standard: "
             f"{'on' if cfg['autoattack'] else 'off'}; first {cfg['n_points']} test points), beside the published "
             "values and measured − published.", "",
             "| " + " | ".join(show) + " |", "|" + "---|" * len(show)]
    lines += ["| " + " | ".join(fmt(r[k]) for k in show) + " |" for r in rows]
    atomic.write_text(out, "\n".join(lines) + "\n")
