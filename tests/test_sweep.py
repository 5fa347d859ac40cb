"""The onset of catastrophic overfitting per method (fastadv.paper.sweep), derived by code: from the runs' CO flags
on synthetic results, and the paper's from its Fig. 1 values, each against a hand count."""
import math

import pandas as pd
import pytest

from fastadv.evaluation.results import COLUMNS
from fastadv.paper.reference import load_published
from fastadv.paper.render import FIGURES, FigureJob
from fastadv.paper.sweep import co_shares, onset_table, onsets, published_onsets

EPS = [4.0, 8.0, 12.0, 16.0, 20.0]
SEEDS = [0, 1, 2]
# (method, ε) → seeds whose run was flagged CO
CO = {("fgsm", 8.0): {0}, ("fgsm", 12.0): {0, 2}, ("fgsm", 16.0): {0, 1, 2}, ("fgsm", 20.0): {1, 2},
      ("fgsm_rs", 16.0): {1}, ("fgsm_rs", 20.0): {0, 1}}


@pytest.fixture
def results() -> pd.DataFrame:
    rows = []
    for m in ("fgsm", "fgsm_rs", "gradalign"):
        for e in EPS:
            for s in SEEDS:
                for kind in ("final", "best"):
                    row = dict.fromkeys(COLUMNS)
                    flagged = s in CO.get((m, e), set())
                    row.update(dataset="cifar10", method=m, method_label=m, eps=e, train_eps=e, train_seed=s,
                               model_kind=kind, n_points=200, clean_acc=0.7, pgd_protocol="pgd50_10",
                               pgd_acc=0.0 if flagged and kind == "final" else 0.3, train_status="completed",
                               co_epoch=5 if flagged else None, device="cpu", torch="2.14.1")
                    rows.append(row)
    return pd.DataFrame(rows, columns=COLUMNS)


def test_shares_and_onsets_are_counted_from_the_co_flags(results):
    shares = co_shares(results).set_index(["method_label", "eps"])
    assert shares.loc[("fgsm", 8.0), "co_share"] == pytest.approx(1 / 3)
    assert shares.loc[("fgsm", 12.0), ["seeds", "co_seeds"]].tolist() == [3, 2]
    assert shares.loc[("fgsm", 16.0), "pgd_final"] == pytest.approx(0.0)
    assert shares.loc[("fgsm", 16.0), "pgd_best"] == pytest.approx(30.0)
    # the first ε where at least half the seeds overfit: fgsm 2/3 at 12, fgsm_rs 2/3 at 20, gradalign never
    assert onsets(co_shares(results)) == {"fgsm": 12.0, "fgsm_rs": 20.0, "gradalign": None}


def test_the_papers_onsets_from_its_fig1_values():
    """Read off published_values.yaml by hand: FGSM final 0.0 vs early-stopped 37.6 at 8/255 (31.0 at 7, with no
    early-stopped value there); FGSM-RS 0.0 vs 32.6 at 10 (40.5 vs 40.9 at 9); Free AT 0.0 vs 30.6 at 12 (30.1 vs
    35.7 at 11); PGD-2 9.9 vs 27.1 at 16 (18.3 vs 29.6 at 15: above half); GradAlign and PGD-10 never."""
    assert published_onsets(load_published()) == {"fgsm": 8.0, "fgsm_rs": 10.0, "free": 12.0, "gradalign": None,
                                                  "pgd10": None, "pgd2": 16.0}


def test_onset_table_puts_the_paper_beside_and_the_shift(results):
    t = onset_table(co_shares(results), load_published()).set_index("method_label")
    assert t.loc["fgsm", ["onset", "paper_onset", "eps_grid"]].tolist() == ["12", "8", "4-20"]
    assert t.loc["fgsm", "shift"] == 4.0 and t.loc["fgsm_rs", "shift"] == 10.0
    assert t.loc["gradalign", ["onset", "paper_onset"]].tolist() == ["none", "never"] and math.isnan(
        t.loc["gradalign", "shift"])


def test_sweep_target_writes_the_figure_and_both_tables(results, tmp_path):
    path = tmp_path / "results.csv"
    results.to_csv(path, index=False)
    exp = {"dataset": "cifar10", "methods": ["fgsm", "fgsm_rs", "gradalign"], "eps": EPS, "seeds": SEEDS,
           "models": ["final", "best"], "autoattack": False, "description": "synthetic"}
    FIGURES["sweep"](FigureJob("sweep", "quick", exp, tmp_path / "sweep.pdf", [str(path)], published=True))
    md = (tmp_path / "sweep.md").read_text()
    assert "| fgsm | 4-20 | 12 | 8 | 4.0 |" in md and "| gradalign | 4-20 | none | never | nan |" in md
    assert len(pd.read_csv(tmp_path / "sweep.csv")) == 3 * len(EPS)
    assert (tmp_path / "sweep.pdf").read_bytes().startswith(b"%PDF")
