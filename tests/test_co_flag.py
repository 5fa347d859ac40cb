"""The catastrophic-overfitting flag's significance floor and the not-learned status (fastadv.training.monitor,
fastadv.training.outcome), each against an independent computation: the p-values by enumerating every outcome of
tiny cases, the rule on the histories the issue describes, and a finished run's summary against its history
recomputed; older runs (no rule keys in their config) through `fastadv co-flags`."""
import itertools
import json
import math
import shutil
from fractions import Fraction

import pandas as pd
import pytest
import torch
import yaml

from fastadv.cli import main
from fastadv.config.params import deep_merge
from fastadv.evaluation.results import result_row
from fastadv.training.loop import train
from fastadv.training.co_rule import above_chance_pvalue, co_flags, drop_pvalue, flag_co, learned, run_learned
from fastadv.training.monitor import chance_accuracy
from fastadv.training.outcome import chance_of_data, run_outcome
from tests.helpers import PARAMS


def _drop_by_enumeration(before: int, now: int, n: int) -> float:
    """Every placement of the before + now robust outcomes among the 2n (evaluation, point) slots, equally likely
    under 'same robust rate': the share with at least ``before`` in the earlier evaluation's n slots."""
    t = before + now
    placements = list(itertools.combinations(range(2 * n), t))
    return sum(sum(s < n for s in p) >= before for p in placements) / len(placements)


@pytest.mark.parametrize("before,now,n", [(2, 0, 4), (3, 1, 4), (4, 0, 5), (1, 1, 3), (0, 2, 4), (3, 3, 5)])
def test_drop_pvalue_is_fishers_exact_test_by_enumeration(before, now, n):
    assert drop_pvalue(before, now, n) == pytest.approx(_drop_by_enumeration(before, now, n), rel=1e-12)


def test_drop_to_zero_is_choose_n_k_over_choose_2n_k():
    for k, expected in ((2, 0.25), (3, 0.124), (9, 0.0019)):  # ≈ 2^-k at n = 256
        assert drop_pvalue(k, 0, 256) == pytest.approx(math.comb(256, k) / math.comb(512, k), rel=1e-12)
        assert drop_pvalue(k, 0, 256) == pytest.approx(expected, abs=5e-4)


def test_above_chance_pvalue_against_exact_binomial_sums():
    for correct, n, p in ((3, 8, Fraction(1, 10)), (0, 5, Fraction(1, 4)), (46, 256, Fraction(15, 100))):
        exact = sum(math.comb(n, x) * p ** x * (1 - p) ** (n - x) for x in range(correct, n + 1))
        assert above_chance_pvalue(correct, n, float(p)) == pytest.approx(float(exact), rel=1e-9)
    assert above_chance_pvalue(1, 16, 0.0) == 0.0 and above_chance_pvalue(0, 16, 0.0) == 1.0


def test_the_issues_cases_land_where_the_papers_definition_puts_them():
    """At 256 monitored points, FGSM accuracy far above PGD in each: a collapse from 9 robust points (the demo's
    FGSM-RS at 20/255, 3.5 %) is CO; from 2 or 3 points (GradAlign's two flags in the sweep) it is noise."""
    n = 256
    for before, flagged in ((9, True), (7, True), (3, False), (2, False)):
        pgd, fgsm = [0.0, before / n, 0.0], [0.05, 0.30, 0.40]
        assert flag_co(pgd, fgsm, n, 0.5, 0.1, 0.01) == [False, False, flagged], before
        assert flag_co(pgd, fgsm, n, 0.5, 0.1, 1.0) == [False, False, True]  # without the floor: the old rule


def test_co_rule_on_a_scripted_history():
    pgd = [0.05, 0.20, 0.30, 0.02, 0.01, 0.25]
    fgsm = [0.08, 0.30, 0.40, 0.45, 0.05, 0.35]
    # evaluation 3: PGD 2 < 0.5·30 points of 100, FGSM 0.45 − 0.02 ≥ 0.1, the drop significant → CO; 4: PGD
    # collapsed but FGSM too (no gap) → not CO's signature; 5: recovered.
    assert flag_co(pgd, fgsm, 100, 0.5, 0.1, 0.01) == [False, False, False, True, False, False]


def test_learned_means_clean_accuracy_clearly_above_chance():
    n, chance = 256, 34 / 256  # CIFAR-10's first 256 test points: 34 of class 8
    # The quick sweep's GradAlign ε16 seed 1: at most 47 of 256 right (p = 0.013 against 34/256); the demo's FGSM
    # ε16 run before its collapse: 53 (p = 0.0004)
    assert not learned([30 / n, 47 / n, 27 / n], n, chance, 1.0, 0.01)
    assert learned([27 / n, 53 / n, 35 / n], n, chance, 1.0, 0.01)
    assert not learned([27 / n, 53 / n], n, chance, 1.5, 0.01)      # not above 1.5 x chance
    assert learned([0.10, 0.25, 0.30], n, 0.1, 1.5, 0.01)
    assert not learned([0.10, 0.30], 16, 0.1, 1.5, 0.01)             # 5 of 16: not enough points to tell
    assert learned([0.0, 1 / 16], 16, 0.1, 0.0, 0.01)                # ratio 0: one right point is enough
    assert not learned([0.5, 0.6], 32, 0.5, 1.5, 0.01)               # chance: the majority class's share


def test_a_flagged_collapse_is_judged_whatever_the_clean_accuracy():
    """The demo's FGSM at 20/255 (AVX-512): clean 47 of 256 at best (not above chance at 0.01), robust points 8 → 0
    in its last evaluation with FGSM at 61: the paper's CO, counted as such; the same history without the collapse
    (robust points never above 5, the AVX2 demo's FGSM at 16/255) has no robustness to lose and is set apart."""
    n, chance = 256, 34 / 256
    rule = {"co_pgd_ratio": 0.5, "co_min_gap": 0.1, "co_alpha": 0.01, "learned_clean_ratio": 1.0}

    def history(pgd):
        return [{"test_clean_acc": c / n, "test_fgsm_acc": f / n, "test_pgd_acc": p / n}
                for c, f, p in zip((27, 40, 47, 44, 45), (0, 30, 50, 66, 61), pgd)]

    collapsed, never = history((0, 3, 8, 4, 0)), history((0, 3, 5, 4, 0))
    assert not learned([h["test_clean_acc"] for h in collapsed], n, chance, 1.0, 0.01)
    assert co_flags(collapsed, n, rule) == [False, False, False, False, True]
    assert run_learned(collapsed, n, chance, rule)
    assert not any(co_flags(never, n, rule)) and not run_learned(never, n, chance, rule)


def test_chance_is_a_constant_predictions_accuracy():
    assert chance_accuracy(torch.tensor([3, 1, 3, 3, 0, 2, 3, 1])) == 0.5


def _run(tiny_cfg, out, **monitor):
    cfg = deep_merge(tiny_cfg, {"data": {"subset": 96}, "optim": {"batch_size": 32, "epochs": 2},
                                "method": {"name": "fgsm"}, "monitor": monitor})
    return train(cfg, out)


def test_a_finished_run_records_what_its_history_says(tmp_path, tiny_cfg):
    """summary.json's status and first CO flag, the history's co column and the results row all equal the
    outcome recomputed from history.csv (the rule applied once while training, once after)."""
    # The tiny task's clean accuracy is not clearly above 1.5 x chance (its majority class's share) on 32 points:
    # the rule says not_learned; with ratio 0 one right point is enough: completed.
    for ratio, status in ((1.5, "not_learned"), (0.0, "completed")):  # (the params' 1.0 leaves it on the edge)
        out = tmp_path / f"ratio{ratio}"
        s = _run(tiny_cfg, out, learned_clean_ratio=ratio)
        o = run_outcome(out)
        assert s["status"] == o["status"] == status and s["monitor_points"] == o["monitor_points"] == 32
        assert s["monitor_chance"] == chance_of_data(s["config"]["data"], 32)
        assert s["co_epoch"] == o["co_epoch"] and o["rule_from_defaults"] == []
        assert list(pd.read_csv(out / "history.csv")["co"]) == o["flags"]
        if status == "not_learned":
            assert f"never above 1.5 x chance ({s['monitor_chance']:.3f})" in s["reason"]
        res = {"dataset": "svhn", "method": "fgsm", "method_label": "fgsm", "train_eps": 8, "eps": 8,
               "train_seed": 0, "model_kind": "final", "model_epoch": 2, "n_points": 8, "clean_acc_full": None,
               "clean_acc": 0.5, "pgd": {"protocol": "pgd50_10", "acc": 0.1}, "seconds": {"total": 1.0},
               "hardware": {"gpu": None, "device": "cpu", "torch": "x"}, "model_path": str(out / "model_final.pt")}
        row = result_row(res, "r.json", None)
        assert (row["train_status"], row["co_epoch"], row["co_rule"]) == (status, s["co_epoch"], "run config")


def _as_older_run(src, dst, history_co):
    """A copy of ``src`` as a run trained before the rule's new keys: no co_alpha, learned_clean_ratio,
    monitor_points, monitor_chance (read from the data again); its history's flags those of the old rule."""
    shutil.copytree(src, dst)
    s = json.loads((dst / "summary.json").read_text())
    for k in ("co_alpha", "learned_clean_ratio"):
        del s["config"]["monitor"][k]
    del s["monitor_points"], s["monitor_chance"]
    s["status"] = "completed"
    (dst / "summary.json").write_text(json.dumps(s))
    h = pd.read_csv(dst / "history.csv")
    h["co"] = history_co
    h.to_csv(dst / "history.csv", index=False)


def test_co_flags_command_recomputes_older_runs_under_the_params_rule(tmp_path, tiny_cfg, capsys):
    out = tmp_path / "run"
    _run(tiny_cfg, out)
    _as_older_run(out, tmp_path / "older", False)
    params = tmp_path / "params.yaml"
    doc = yaml.safe_load(PARAMS.read_text())
    doc["train"]["monitor"]["learned_clean_ratio"] = 0.0
    params.write_text(yaml.safe_dump(doc))
    assert main(["co-flags", str(tmp_path / "older"), "--params", str(params), "--out", str(tmp_path / "f.csv")]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(tmp_path / "f.csv")
    # The params file's ratio 0 won over the packaged 1.0 (the run's config has none): completed, and said so.
    assert table.loc[0, "status"] == "completed" and table.loc[0, "recorded_status"] == "completed"
    assert table.loc[0, "rule_from_params"] == "co_alpha, learned_clean_ratio" and table.loc[0, "monitor_points"] == 32
    assert "rule_from_params" in printed and "co_alpha, learned_clean_ratio" in printed
    # Without defaults the keys the config lacks are refused, by name.
    with pytest.raises(Exception, match="monitor.co_alpha, monitor.learned_clean_ratio"):
        run_outcome(tmp_path / "older")
    assert main(["co-flags", str(tmp_path / "missing")]) == 2
    assert "is not a finished run (summary.json missing)" in capsys.readouterr().err
    assert not (tmp_path / "missing").exists()
