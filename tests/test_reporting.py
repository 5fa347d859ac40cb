"""The paper's reporting rules at the paper scale (fastadv.paper.reporting): clean accuracy on the whole test set,
PGD-50-10 on the first 1,000 test points under the official restart rule, the worst case drawn beside — checked
from the resolved configs and on synthetic evaluations whose every column holds a different value."""
import pandas as pd
import pytest

from fastadv.config.study import Study
from fastadv.errors import FastAdvError
from fastadv.evaluation.results import COLUMNS
from fastadv.paper.render import FIGURES, FigureJob
from fastadv.paper.reporting import reported
from tests.helpers import PARAMS

EXPERIMENT = {"dataset": "cifar10", "methods": ["fgsm", "gradalign"], "eps": [4.0, 8.0], "seeds": [0, 1],
              "models": ["final", "best"], "autoattack": True, "description": "synthetic"}
# every reported quantity its own value, so a figure drawing the wrong column is caught
VALUES = {"clean_acc": 0.80, "clean_acc_full": 0.85, "pgd_acc": 0.40, "pgd_acc_max_loss": 0.45, "autoattack_acc": 0.38}


def _results(tmp_path, max_loss=True) -> str:
    rows = []
    for m in EXPERIMENT["methods"]:
        for e in EXPERIMENT["eps"]:
            for s in EXPERIMENT["seeds"]:
                for k in EXPERIMENT["models"]:
                    row = dict.fromkeys(COLUMNS)
                    row.update(VALUES, dataset="cifar10", method=m, method_label=m, train_eps=e, eps=e, train_seed=s,
                               model_kind=k, n_points=1000, pgd_protocol="pgd50_10", train_status="completed",
                               device="cpu", torch="2.14.1", train_seconds=10.0)
                    if not max_loss:
                        row["pgd_acc_max_loss"] = None
                    rows.append(row)
    path = tmp_path / "results.csv"
    pd.DataFrame(rows, columns=COLUMNS).to_csv(path, index=False)
    return str(path)


@pytest.mark.parametrize("experiment", ["fig1", "fig1_svhn", "autoattack", "table7", "methods_comparison"])
def test_paper_scale_evaluates_the_first_1000_points_under_both_rules_and_clean_on_the_whole_test_set(experiment):
    """The official eval.py takes the first n_eval test points in order (data.py: data[:n_ex], no shuffle)."""
    ev = Study.load(PARAMS, "paper").eval_config(experiment)
    assert (ev["n_points"], ev["protocol"], ev["restart_rule"], ev["full_clean"]) == (1000, "pgd50_10", "both", True)
    for scale in ("smoke", "quick"):  # the CPU scales' cheaper settings (labelled on every figure), except where a
        # table shows both rules (the autoattack experiment's attacks_table)
        want = "both" if experiment == "autoattack" else "worst_case"
        assert Study.load(PARAMS, scale).eval_config(experiment)["restart_rule"] == want


def test_reported_columns_per_scale(tmp_path):
    df = pd.read_csv(_results(tmp_path))
    paper, note = reported(df, "paper")
    assert (paper["clean_acc"] == 0.85).all() and (paper["pgd_acc"] == 0.45).all()
    assert (paper["clean_acc_points"] == 0.80).all() and (paper["pgd_acc_worst_case"] == 0.40).all()
    assert note.startswith("paper scale") and "whole test set" in note and "first 1000 test points" in note and "highest loss" in note
    quick, note = reported(df, "quick")
    assert (quick["clean_acc"] == 0.80).all() and (quick["pgd_acc"] == 0.40).all() and "worst case" in note
    with pytest.raises(FastAdvError, match="the results lack pgd_acc_max_loss: evaluate with full_clean: true and "
                                           "restart_rule: both"):
        reported(pd.read_csv(_results(tmp_path, max_loss=False)), "paper")


def _draw(name, scale, tmp_path, results):
    out = tmp_path / f"{name}_{scale}.{'md' if name in ('autoattack', 'table7', 'vs_published') else 'pdf'}"
    FIGURES[name](FigureJob(name, scale, EXPERIMENT, out, [results]))
    return out


@pytest.mark.parametrize("scale, pgd, clean, dotted", [("paper", 0.45, 0.85, 0.40), ("quick", 0.40, 0.80, None)])
def test_fig1_draws_the_official_rule_and_full_clean_at_the_paper_scale(tmp_path, scale, pgd, clean, dotted):
    out = _draw("fig1", scale, tmp_path, _results(tmp_path))
    data = pd.read_csv(out.with_name(out.stem + "_data.csv"))
    pgd_rows, clean_rows = data[data["metric"] == "pgd_acc"], data[data["metric"] == "clean_acc"]
    assert (pgd_rows[pgd_rows["source"] == "measured"]["mean"] == pgd).all()
    assert (clean_rows[clean_rows["source"] == "measured"]["mean"] == clean).all()
    second = pgd_rows[pgd_rows["source"] == "measured: pgd_acc_worst_case"]
    assert (second["mean"] == dotted).all() and len(second) == (8 if dotted else 0)  # 2 methods × 2 ε × 2 model kinds


@pytest.mark.parametrize("name, column", [("autoattack", "pgd_acc_mean"), ("table7", "pgd_mean")])
def test_tables_report_the_official_rule_and_say_so(tmp_path, name, column):
    for scale, pgd, words in (("paper", 45.0, "restart of highest loss"), ("quick", 40.0, "worst case")):
        out = _draw(name, scale, tmp_path, _results(tmp_path))
        table = pd.read_csv(out.with_suffix(".csv"))
        assert table[column].round(6).eq(pgd).all() and words in out.read_text().splitlines()[0]
