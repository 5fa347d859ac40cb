"""The table of the paper's figures and tables (fastadv.paper.targets) drives the CLI, the rules and the docs' targets reference."""
import re

import pytest

from fastadv.cli import build_parser
from fastadv.config.study import Study
from fastadv.errors import FastAdvError
from fastadv.paper import targets
from tests.helpers import PARAMS, REPO, copy_workflow, dry_run_jobs

RUNS = [{"variant": v, "eps": e, "seed": s} for v in ("fgsm", "gradalign") for e in (4.0, 16.0) for s in (0, 1)]


def test_every_renderer_has_a_target_and_the_cli_offers_exactly_them():
    from fastadv.paper.render import FIGURES

    assert set(targets.renderers()) == set(FIGURES)
    choices = next(a for a in build_parser()._subparsers._group_actions[0].choices["figure"]._actions
                   if a.dest == "name").choices
    assert list(choices) == list(targets.renderers())
    assert len({t.name for t in targets.TARGETS}) == len(targets.TARGETS)


def test_find_reads_the_eps_of_a_per_eps_target_and_refuses_unknown_names():
    t, eps = targets.find("fig1_curves_eps16")
    assert (t.draw, t.histories, eps) == ("figA", "per_eps", 16.0)
    assert targets.find("fig1") == (targets.find("fig1")[0], None) and targets.find("fig1")[0].clean_panel
    with pytest.raises(FastAdvError, match=r"unknown target 'fig2'; valid: .*cnn4_fig11.*vs_published"):
        targets.find("fig2")


def test_runs_drawn_and_options_per_kind_of_target():
    by = {t.name: t for t in targets.TARGETS}
    assert targets.runs_drawn(by["figA"], RUNS) == RUNS
    assert targets.runs_drawn(by["fig1_curves_eps{eps}"], RUNS, 16.0) == [
        {"variant": "fgsm", "eps": 16.0, "seed": 0}, {"variant": "gradalign", "eps": 16.0, "seed": 0}]
    assert targets.runs_drawn(by["cnn4_fig11"], RUNS + [{"variant": "standard", "eps": 4.0, "seed": 0}]) == [
        {"variant": "fgsm", "eps": 4.0, "seed": 0}, {"variant": "gradalign", "eps": 4.0, "seed": 0}]
    assert targets.runs_drawn(by["cnn4_fig5"], RUNS[::-1]) == [{"variant": "fgsm", "eps": 16.0, "seed": 1}]
    assert targets.runs_drawn(by["fig1"], RUNS) == []
    assert targets.options(by["fig1"]) == ["--published"]
    assert targets.options(by["fig1_curves_eps{eps}"], 16.0) == ["--eps=16"]
    assert targets.options(by["cnn4_fig7"]) == ["--data-root=data"]


def test_constraints_split_the_targets_between_the_four_rules():
    experiments = list(Study.load(PARAMS).doc["experiments"])
    figures = targets.names("figure", experiments, clean_panel=False)
    accuracy = targets.names("figure", experiments, clean_panel=True)
    tables = targets.names("table", experiments)
    both = targets.names("figure_table", experiments)
    assert sorted(figures + accuracy + tables + both) == sorted(t.name for t in targets.TARGETS)
    for names in (figures, accuracy, tables, both):
        pattern = re.compile(f"(?:{targets.name_regex(names)})$")
        others = [n for n in figures + accuracy + tables + both if n not in names]
        assert all(pattern.match(n.replace("{eps}", "16")) for n in names)
        assert not any(pattern.match(n.replace("{eps}", "16")) for n in others)
    assert targets.name_regex([]) == "(?!)"  # no target of a kind: a constraint nothing matches


def test_one_dry_run_plans_every_target_with_its_rule(tmp_path):
    """Every target of the table, at the smoke scale: one job of the rule its kind says."""
    wf = copy_workflow(tmp_path)
    study = Study.load(PARAMS, "smoke")
    paths = []
    for t in targets.TARGETS:
        name = t.name.format(eps=f"{study.experiment(t.source)['eps'][0]:g}")
        paths.append(f"results/smoke/{name}.{'md' if t.kind == 'table' else 'pdf'}")
    jobs = dry_run_jobs(wf, *paths, "--config", "allow_cpu=true")
    kinds = [("figure", False), ("figure", True), ("figure_table", None), ("table", None)]
    want = [sum(t.kind == k and (c is None or t.clean_panel == c) for t in targets.TARGETS) for k, c in kinds]
    rules = ("draw_figure", "draw_accuracy_figure", "draw_figure_and_table", "make_table")
    assert [jobs.get(r, 0) for r in rules] == want
    rules = re.findall(r"^(?:rule|use rule) (\w+)", (REPO / "workflow/rules/figures.smk").read_text(), re.M)
    assert rules == ["draw_figure", "draw_figure", "draw_figure", "draw_figure", "check_lemma2", "check_fidelity",
                     "select_default_scale"], "figures.smk: one rule for every figure and table of the table"


def test_a_target_reading_histories_of_an_unknown_kind_is_refused():
    with pytest.raises(ValueError, match=r"target x: histories 'some'; valid: all, per_eps, first_run, fgsm_run"):
        targets.Target("x", "fig1", "what", "caption", experiment="fig1", histories="some")
