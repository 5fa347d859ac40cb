"""The onset of catastrophic overfitting per method (fastadv.paper.sweep), derived by code: from the runs' CO flags
and final collapses on synthetic results, and the paper's from its Fig. 1 values, each against a hand count; the
sweep's runs shared with the demo's where their configs coincide."""
import math
import re

import pandas as pd
import pytest

from fastadv.config.params import deep_merge, read_params
from fastadv.config.study import Study, validate_study
from fastadv.workflow.runs import run_home
from fastadv.evaluation.results import COLUMNS
from fastadv.paper.reference import load_published
from fastadv.paper.render import FIGURES, FigureJob
from fastadv.paper.sweep import co_shares, onset_table, onsets, per_seed, published_onsets
from tests.helpers import PARAMS, copy_workflow, snakemake

EPS = [4.0, 8.0, 12.0, 16.0, 20.0]
SEEDS = [0, 1, 2]
# (method, ε) → seeds whose run was flagged CO
CO = {("fgsm", 8.0): {0}, ("fgsm", 12.0): {0, 2}, ("fgsm", 16.0): {0, 1, 2}, ("fgsm", 20.0): {1, 2},
      ("fgsm_rs", 16.0): {1}, ("fgsm_rs", 20.0): {0, 1}, ("gradalign", 12.0): {0, 2}}
# flagged at some evaluation, recovered by the end (final PGD accuracy as the early-stopped model's)
RECOVERED = {("gradalign", 12.0): {0, 2}}


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    for m in ("fgsm", "fgsm_rs", "gradalign"):
        for e in EPS:
            for s in SEEDS:
                for kind in ("final", "best"):
                    row = dict.fromkeys(COLUMNS)
                    flagged = s in CO.get((m, e), set())
                    collapsed = flagged and s not in RECOVERED.get((m, e), set())
                    row.update(dataset="cifar10", method=m, method_label=m, eps=e, train_eps=e, train_seed=s,
                               model_kind=kind, n_points=200, clean_acc=0.7, pgd_protocol="pgd50_10",
                               pgd_acc=0.0 if collapsed and kind == "final" else 0.3, train_status="completed",
                               co_epoch=5 if flagged else None, device="cpu", torch="2.14.1",
                               model_epoch=10 if kind == "final" else 4 + s, final_grad_alignment=0.1 + s,
                               train_seconds=100.0 + s)
                    rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def test_shares_and_onsets_are_counted_from_the_co_flags(results):
    shares = co_shares(results).set_index(["method_label", "eps"])
    assert shares.loc[("fgsm", 8.0), "co_share"] == pytest.approx(1 / 3)
    assert shares.loc[("fgsm", 12.0), ["seeds", "co_seeds"]].tolist() == [3, 2]
    assert shares.loc[("fgsm", 16.0), "pgd_final"] == pytest.approx(0.0)
    assert shares.loc[("fgsm", 16.0), "pgd_best"] == pytest.approx(30.0)
    assert shares.loc[("gradalign", 12.0), ["co_seeds", "collapsed_seeds"]].tolist() == [2, 0]
    # the first ε where at least half the seeds overfit: fgsm 2/3 at 12, fgsm_rs 2/3 at 20, gradalign flagged on
    # 2/3 at 12 but recovered, so it never collapses at the end
    assert onsets(co_shares(results)) == {"fgsm": 12.0, "fgsm_rs": 20.0, "gradalign": 12.0}
    assert onsets(co_shares(results), "collapsed") == {"fgsm": 12.0, "fgsm_rs": 20.0, "gradalign": None}


def test_per_seed_rows_are_each_runs_own_numbers(results):
    runs = per_seed(results).set_index(["method_label", "eps", "train_seed"])
    assert len(runs) == 3 * len(EPS) * len(SEEDS)
    assert runs.loc[("fgsm", 16.0, 1)].tolist() == ["completed", "5", True, 70.0, 0.0, 5, 30.0, 1.1, 101.0]
    assert runs.loc[("fgsm_rs", 16.0, 2)].tolist() == ["completed", "none", False, 70.0, 30.0, 6, 30.0, 2.1, 102.0]
    assert runs.loc[("gradalign", 12.0, 0)].tolist() == ["completed", "5", False, 70.0, 30.0, 4, 30.0, 0.1, 100.0]


def test_runs_that_did_not_learn_are_counted_apart(results):
    """fgsm_rs at 20/255: seeds 0 and 1 flagged (the onset); seed 0 made not_learned leaves 1 of 2 learned seeds
    flagged (still half: onset 20), seed 1 too leaves 0 of 1 (no onset); shares are of the seeds that learned."""
    def unlearn(df, seeds):
        hit = (df["method_label"] == "fgsm_rs") & (df["eps"] == 20.0) & df["train_seed"].isin(seeds)
        return df.assign(train_status=df["train_status"].where(~hit, "not_learned"))

    one = co_shares(unlearn(results, [0])).set_index(["method_label", "eps"]).loc[("fgsm_rs", 20.0)]
    assert one[["seeds", "not_learned", "co_seeds", "co_share"]].tolist() == [2, 1, 1, 0.5]
    assert onsets(co_shares(unlearn(results, [0])))["fgsm_rs"] == 20.0
    two = co_shares(unlearn(results, [0, 1])).set_index(["method_label", "eps"]).loc[("fgsm_rs", 20.0)]
    assert two[["seeds", "not_learned", "co_seeds", "co_share"]].tolist() == [1, 2, 0, 0.0]
    assert onsets(co_shares(unlearn(results, [0, 1])))["fgsm_rs"] is None
    assert per_seed(unlearn(results, [0])).set_index(["method_label", "eps", "train_seed"]).loc[
        ("fgsm_rs", 20.0, 0), "status"] == "not_learned"


def test_the_papers_onsets_from_its_fig1_values():
    """Read off published_values.yaml by hand: FGSM final 0.0 vs early-stopped 37.6 at 8/255 (31.0 at 7, with no
    early-stopped value there); FGSM-RS 0.0 vs 32.6 at 10 (40.5 vs 40.9 at 9); Free AT 0.0 vs 30.6 at 12 (30.1 vs
    35.7 at 11); PGD-2 9.9 vs 27.1 at 16 (18.3 vs 29.6 at 15: above half); GradAlign and PGD-10 never."""
    assert published_onsets(load_published()) == {"fgsm": 8.0, "fgsm_rs": 10.0, "free": 12.0, "gradalign": None,
                                                  "pgd10": None, "pgd2": 16.0}


def test_onset_table_puts_the_paper_beside_and_the_shift(results):
    t = onset_table(co_shares(results), load_published()).set_index("method_label")
    assert t.loc["fgsm", ["onset_co_flag", "onset_collapse", "paper_onset", "eps_grid"]].tolist() == [
        "12", "12", "8", "4-20"]
    assert t.loc["fgsm", "shift"] == 4.0 and t.loc["fgsm_rs", "shift"] == 10.0
    assert t.loc["gradalign", ["onset_co_flag", "onset_collapse", "paper_onset"]].tolist() == ["12", "none", "never"]
    assert math.isnan(t.loc["gradalign", "shift"])


def test_sweep_target_writes_the_figure_and_both_tables(results, tmp_path):
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    exp = {"dataset": "cifar10", "methods": ["fgsm", "fgsm_rs", "gradalign"], "eps": EPS, "seeds": SEEDS,
           "models": ["final", "best"], "autoattack": False, "description": "synthetic"}
    FIGURES["sweep"](FigureJob("sweep", "quick", exp, tmp_path / "sweep.pdf", [str(path)], published=True))
    md = (tmp_path / "sweep.md").read_text()
    assert "| fgsm | 4-20 | 12 | 12 | 8 | 4.0 |" in md and "| gradalign | 4-20 | 12 | none | never | nan |" in md
    assert "| fgsm | 16.0 | 1 | completed | 5 | True | 70.0 | 0.0 | 5 | 30.0 | 1.1 | 101.0 |" in md  # the per-run table
    assert len(pd.read_csv(tmp_path / "sweep.csv")) == 3 * len(EPS)
    assert (tmp_path / "sweep.pdf").read_bytes().startswith(b"%PDF")


def _run(variant, eps, seed=0):
    return {"dataset": "cifar10", "variant": variant, "eps": eps, "seed": seed}


def _quick(sweep_override: dict) -> Study:
    doc = deep_merge(read_params(PARAMS), {"scales": {"quick": {"experiments": {"sweep": sweep_override}}}})
    return Study(validate_study(doc), "quick")


def test_a_run_two_experiments_ask_for_with_the_same_configs_lives_once():
    s = Study.load(PARAMS, "quick")
    demo_runs = [_run(v, e) for v in ("fgsm", "fgsm_rs", "gradalign") for e in (16.0, 20.0)]
    assert [run_home(s, "sweep", r) for r in demo_runs] == ["fig1"] * 6
    assert run_home(s, "sweep", _run("fgsm", 16.0, seed=1)) == "sweep"  # the demo trains seed 0 only
    assert run_home(s, "sweep", _run("fgsm", 8.0)) == "sweep"
    assert run_home(s, "fig1", _run("fgsm", 16.0)) == "fig1"
    assert run_home(s, "figA", _run("gradalign", 16.0)) == "fig1"  # figA at quick: fig1's 10 epochs, final model
    # anything a run's outputs depend on keeps it apart; the threads do not
    for over in ({"train": {"optim": {"epochs": 9}}}, {"train": {"method": {"clamp_in_graph": False}}},
                 {"evaluate": {"n_points": 100}}):
        assert run_home(_quick(over), "sweep", _run("fgsm", 16.0)) == "sweep", over
    assert run_home(_quick({"train": {"runtime": {"threads": 2}}}), "sweep", _run("fgsm", 16.0)) == "fig1"


def test_the_quick_sweep_plans_the_demos_runs_in_the_demos_directories(tmp_path):
    out = snakemake(copy_workflow(tmp_path), "-n", "--cores", "2", "results/quick/sweep.pdf").stdout
    trained = set(re.findall(r"runs/quick/(\w+)/(\w+)/eps([\d.]+)/seed(\d+)/model_final\.pt", out))
    evaluated = set(re.findall(r"results/quick/(\w+)/evals/(\w+)/eps([\d.]+)/seed(\d+)/best\.json", out))
    assert len(trained) == 3 * 4 * 3 and evaluated == trained
    assert {r for r in trained if r[0] == "fig1"} == {("fig1", v, e, "0") for v in ("fgsm", "fgsm_rs", "gradalign")
                                                      for e in ("16", "20")}
