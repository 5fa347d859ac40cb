"""Figures and tables draw exactly the tidy table's numbers, in valid PDF/PNG files."""
import numpy as np
import pandas as pd
import pytest

from fastadv.paper import figures as F
from fastadv.errors import FastAdvError
from fastadv.paper.reference import load_published


@pytest.fixture
def table():
    rng = np.random.default_rng(0)
    rows = []
    for label, base in (("fgsm", 0.3), ("gradalign", 0.4)):
        for eps in (4.0, 8.0):
            for seed in (0, 1, 2):
                for kind in ("final", "best"):
                    rows.append({"method_label": label, "eps": eps, "train_seed": seed, "model_kind": kind,
                                 "pgd_acc": base - eps / 100 + rng.normal(0, 0.01), "clean_acc": 0.8,
                                 "autoattack_acc": base - eps / 100 - 0.01, "final_grad_alignment": 0.9,
                                 "train_seconds": {"fgsm": 10.0, "gradalign": 30.0}[label] + seed,
                                 "device": "cpu", "torch": "2.14.1"})
    return pd.DataFrame(rows)


def test_fig1_draws_mean_and_std_over_seeds(table, tmp_path):
    drawn = F.accuracy_vs_eps(table, "pgd_acc", tmp_path / "fig1.pdf", "smoke", "PGD")
    assert (tmp_path / "fig1.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "fig1.png").read_bytes().startswith(b"\x89PNG")
    g = table[(table.method_label == "gradalign") & (table.eps == 8.0) & (table.model_kind == "best")]["pgd_acc"]
    row = drawn[(drawn.method_label == "gradalign") & (drawn.eps == 8.0) & (drawn.model_kind == "best")].iloc[0]
    assert row["mean"] == pytest.approx(g.mean()) and row["std"] == pytest.approx(g.std()) and row["count"] == 3


def test_learning_curves_mark_co_epochs(tmp_path):
    h = pd.DataFrame({"epoch": [0, 1, 2, 3], "test_pgd_acc": [0.1, 0.3, 0.02, 0.01],
                      "grad_alignment": [0.9, 0.8, 0.1, 0.05], "co": [False, False, True, True]})
    drawn = F.learning_curves({"fgsm": h, "gradalign": h.assign(co=False)}, tmp_path / "figA.pdf", "smoke", 14)
    assert (tmp_path / "figA.pdf").read_bytes().startswith(b"%PDF")
    assert drawn[drawn.method_label == "fgsm"]["co"].tolist() == [False, False, True, True]


def test_runtime_table_ratio_to_fgsm(table, tmp_path):
    t = F.runtime_table(table)
    ga = t[t.method_label == "gradalign"].iloc[0]
    assert ga["ratio_to_fgsm"] == pytest.approx(31.0 / 11.0) and ga["runs"] == 6
    F.write_table(t, tmp_path / "runtime.md", "caption (cpu, torch 2.14.1)")
    md = (tmp_path / "runtime.md").read_text()
    assert md.startswith("caption (cpu") and "FGSM+GradAlign" in md and (tmp_path / "runtime.csv").is_file()
    with pytest.raises(FastAdvError, match="needs FGSM runs"):
        F.runtime_table(table[table.method_label != "fgsm"])


def test_accuracy_table_mean_std_in_percent(table, tmp_path):
    t = F.accuracy_table(table, 8.0)
    g = table[(table.method_label == "fgsm") & (table.eps == 8.0) & (table.model_kind == "final")]
    row = t[t.method_label == "fgsm"].iloc[0]
    assert row["pgd_acc_mean"] == pytest.approx(100 * g["pgd_acc"].mean())
    assert row["autoattack_acc_std"] == pytest.approx(100 * g["autoattack_acc"].std(ddof=1))
    F.write_table(t, tmp_path / "aa.md", "caption", latex=True)
    assert "\\begin{table}" in (tmp_path / "aa.tex").read_text()


PUBLISHED = """
- {dataset: cifar10, method: gradalign, eps: 8, model: unstated, metric: pgd_acc, mean: 47.5, std: null, seeds: null, origin: paper, source: s1}
- {dataset: cifar10, method: fgsm, eps: 4, model: final, metric: pgd_acc, mean: 40.0, std: 1.5, seeds: 5, origin: paper, source: s2}
- {dataset: cifar10, method: pgd10, eps: 8, model: final, metric: pgd_acc, mean: 50.0, std: null, seeds: null, origin: paper, source: s3}
- {dataset: svhn, method: fgsm, eps: 8, model: final, metric: pgd_acc, mean: 10.0, std: null, seeds: null, origin: paper, source: s4}
- {dataset: cifar10, method: fgsm, eps: 8, model: final, metric: autoattack_acc, mean: 20.0, std: 0.5, seeds: 5, origin: paper, source: s5}
"""


def test_published_values_shipped_are_valid_and_sourced():
    ref = load_published()
    assert len(ref) >= 5 and ref["source"].str.len().min() > 20
    ga = ref[(ref.method == "gradalign") & (ref.metric == "autoattack_acc")].iloc[0]
    assert (ga["eps"], ga["mean"], ga["std"]) == (8, 44.54, 0.24)  # the author response, as the issue quotes it
    with pytest.raises(FastAdvError, match="metric 'pgd50' / model 'final'; valid metrics"):
        load_published(PUBLISHED.replace("metric: pgd_acc", "metric: pgd50", 1).replace("unstated", "final", 1))
    with pytest.raises(FastAdvError, match="required"):
        load_published(PUBLISHED.replace(", origin: paper, source: s1", ""))


def test_fig1_overlays_published_values_of_its_methods_and_panels(table, tmp_path):
    drawn = F.accuracy_vs_eps(table, "pgd_acc", tmp_path / "fig1.pdf", "quick", "PGD",
                              published=load_published(PUBLISHED), dataset="cifar10")
    pub = drawn[drawn.source == "published"].set_index(["model_kind", "method_label", "eps"])["mean"]
    # unstated model kind: both panels; final-only value: final panel; other methods and datasets: not drawn
    assert pub.to_dict() == {("final", "gradalign", 8): 0.475, ("final", "fgsm", 4): 0.40,
                             ("best", "gradalign", 8): 0.475}
    assert set(drawn.loc[drawn.source == "published", "origin"]) == {"paper"}
    assert drawn.loc[drawn.source == "published", "std"].fillna(-1).tolist() == [-1, 0.015, -1]
    measured = drawn[drawn.source == "measured"]
    assert len(measured) == 2 * 2 * 2 and (tmp_path / "fig1.png").is_file()


def test_tables_carry_published_values(table):
    t = F.accuracy_table(table, 8.0, load_published(PUBLISHED), "cifar10").set_index("method_label")
    assert (t.loc["fgsm", "published_autoattack_acc_mean"], t.loc["fgsm", "published_autoattack_acc_std"]) == (20.0, 0.5)
    assert np.isnan(t.loc["gradalign", "published_autoattack_acc_mean"])
    r = F.runtime_table(table, load_published(), "cifar10").set_index("method_label")
    assert r.loc["gradalign", "published_ratio_to_fgsm"] == pytest.approx(30.9 / 9.5)  # rebuttal: 3.25×
    assert r.loc["fgsm", "published_ratio_to_fgsm"] == 1.0


@pytest.mark.parametrize("status,other", [("diverged", "not_learned"), ("not_learned", "diverged")])
def test_fig1_marks_diverged_and_not_learned_runs(table, tmp_path, status, other):
    table = table.assign(train_status="completed")
    hit = (table.method_label == "gradalign") & (table.eps == 8.0) & (table.train_seed == 1)
    table.loc[hit, "train_status"] = status
    drawn = F.accuracy_vs_eps(table, "pgd_acc", tmp_path / "fig1.pdf", "quick", "PGD")
    marked = drawn[drawn[status] > 0]
    assert sorted(zip(marked.model_kind, marked.method_label, marked.eps)) == [
        ("best", "gradalign", 8.0), ("final", "gradalign", 8.0)]
    assert (marked[status] == 1).all() and drawn[status].sum() == 2 and drawn[other].sum() == 0


@pytest.mark.parametrize("eps, noted", [(None, True), (20.0, False)])
def test_curves_note_only_fig_a_own_experiment(tmp_path, monkeypatch, eps, noted):
    """Fig. A at a CPU scale notes its experiment's description (what the scale dropped); the curves of another
    experiment at one ε (fig1_curves_eps20) do not carry that experiment's description, which is about its figure."""
    from fastadv.paper import render

    run = tmp_path / "fgsm" / "eps20" / "seed0"
    run.mkdir(parents=True)
    pd.DataFrame({"epoch": [0, 1], "test_pgd_acc": [0.1, 0.2], "grad_alignment": [0.9, 0.9],
                  "co": [False, False]}).to_csv(run / "history.csv", index=False)
    seen = {}
    monkeypatch.setattr(render.F, "learning_curves",
                        lambda curves, out, scale, eps_shown, note=None: seen.update(note=note, eps=eps_shown) or
                        pd.DataFrame())
    exp = {"eps": [20.0], "description": "what this experiment's own figure shows"}
    render.draw_figA(render.FigureJob("figA", "quick", exp, tmp_path / "c.pdf", histories=[str(run / "history.csv")],
                                      eps=eps))
    assert seen == {"note": exp["description"] if noted else None, "eps": 20.0}
