"""The Snakemake workflow: schema in sync, lint clean, DAG shape, smoke pipeline end to end."""
import json

import pandas as pd
import pytest
import torch
import yaml

from fastadv.config.study import Study

from fastadv.config.schema import json_schema

from fastadv.workflow.overrides import typed_overrides
from fastadv.paper.reference import load_published
from tests.helpers import (PARAMS, REPO, SMOKE_TARGETS, copy_build, copy_workflow, data_source, dry_run_jobs, snakemake,
                           write_separable_dataset)


def test_schema_file_is_generated_from_the_specs():
    committed = yaml.safe_load((REPO / "workflow/schemas/config.schema.yaml").read_text())
    assert committed == yaml.safe_load(yaml.safe_dump(json_schema())), "run: fastadv schema > workflow/schemas/config.schema.yaml"


def test_misspelled_key_fails_validation(tmp_path):
    wf = copy_workflow(tmp_path)
    (wf / "params.yaml").write_text(PARAMS.read_text().replace("    lr_schedule: cyclic", "    lr_shedule: cyclic"))
    r = snakemake(wf, "-n", "results/smoke/fig1.pdf", check=False)
    assert r.returncode != 0 and "lr_shedule" in r.stdout + r.stderr


def test_lint_is_clean():
    r = snakemake(REPO, "--lint")
    assert "Congratulations, your workflow is in a good condition" in r.stdout + r.stderr


def test_unscaled_targets_build_the_configured_scale(tmp_path):
    wf = copy_workflow(tmp_path)
    assert Study.load(PARAMS).scale == "paper"
    jobs = dry_run_jobs(wf, "results/fig1.pdf")
    assert jobs["select_default_scale"] == 1 and jobs["train_model"] == 480 and jobs["draw_accuracy_figure"] == 1
    r = snakemake(wf, "-n", "--cores", "2", "results/fig1.pdf", "--config", "scale=smoke")
    assert "input: results/smoke/fig1.pdf" in r.stdout
    assert dry_run_jobs(wf, "results/fig1.pdf", "--config", "scale=smoke") == {
        "prepare_data": 1, "train_model": 4, "evaluate_model": 8, "collect_results": 1, "draw_accuracy_figure": 1,
        "select_default_scale": 1}
    # Every figure and table has its unscaled target (one plan for all: a missing one fails it; ~2 s a plan).
    names = ("figA.pdf", "grad_alignment.pdf", "fig1_curves_eps16.pdf", "runtime.md", "autoattack.md",
             "attacks_table.md", "methods_comparison.pdf", "methods_comparison_runtime.md", "imagenet.pdf")
    assert dry_run_jobs(wf, *(f"results/{name}" for name in names))["select_default_scale"] == len(names)
    # A bare `snakemake` builds the paper's figures and tables at the configured scale.
    r = snakemake(wf, "-n", "--cores", "2", "--config", "scale=smoke")
    assert "input: results/smoke/figA.pdf" in r.stdout and "results/paper" not in r.stdout


def test_longest_trainings_are_scheduled_first(tmp_path):
    """train_model's priority is the run's estimated passes (fastadv.workflow.guard.training_priority): the quick
    demo starts GradAlign (7.3 passes per iteration) before PGD-2 (3) before FGSM/FGSM-RS (2); evaluations
    (priority 0) come after every training that is ready."""
    from fastadv.workflow.guard import training_passes

    wf = copy_workflow(tmp_path)
    out = snakemake(wf, "-n", "--cores", "2", "results/quick/fig1.pdf", "--config", "scale=quick").stdout
    priority, rule, variant = {}, None, None
    for line in map(str.strip, out.splitlines()):
        if line.startswith(("rule ", "localrule ")):
            rule = line.split()[-1].rstrip(":")
        elif line.startswith("wildcards:") and rule == "train_model":
            variant = dict(kv.split("=") for kv in line[len("wildcards: "):].split(", "))["variant"]
        elif line.startswith("priority:") and rule == "train_model":
            priority.setdefault(variant, set()).add(float(line.split()[1]))
    assert priority.keys() == {"fgsm", "fgsm_rs", "gradalign", "pgd2"} and all(len(v) == 1 for v in priority.values())
    p = {k: v.pop() for k, v in priority.items()}
    assert p["gradalign"] > p["pgd2"] > p["fgsm"] == p["fgsm_rs"] > 0
    assert p["gradalign"] == training_passes(Study.load(PARAMS, "quick").train_config("fig1", "gradalign", 16.0, 0))


@pytest.mark.skipif(torch.cuda.is_available(), reason="the guard stops GPU-scale runs on machines without CUDA")
def test_gpu_scale_on_a_cpu_machine_stops_before_the_first_job(tmp_path):
    wf = copy_workflow(tmp_path)
    r = snakemake(wf, "--cores", "all", "results/fig1.pdf", check=False)
    text = r.stdout + r.stderr
    assert r.returncode != 0
    assert "refusing to start 480 training(s) and 960 evaluation(s) at scale paper" in text, text[-3000:]
    assert "snakemake --cores 2 results/fig1.pdf --config scale=quick" in text and "allow_cpu=true" in text
    assert not any((wf / d).exists() for d in ("data", "runs", "results", "logs")), "a job ran"


def test_config_strings_get_the_types_of_params_yaml():
    """Snakemake hands nested --config values over as strings; the workflow types them by the schema."""
    got = typed_overrides({
        "scale": "quick", "allow_cpu": True,
        "variants": {"fgsm": {"method": {"name": "fgsm", "fgsm": {"alpha": "1.0"}}}},
        "train": {"data": {"subset": "null", "dataset": "svhn"}, "optim": {"lr_max": "3e-1", "epochs": "3"}},
        "experiments": {"fig1": {"eps": ["4", "16"], "seeds": ["0"], "description": "16"}}})
    assert got["variants"]["fgsm"]["method"] == {"name": "fgsm", "fgsm": {"alpha": 1.0}}
    assert got["train"] == {"data": {"subset": None, "dataset": "svhn"}, "optim": {"lr_max": 0.3, "epochs": 3}}
    assert got["experiments"]["fig1"] == {"eps": [4, 16], "seeds": [0], "description": "16"}
    assert got["scale"] == "quick" and got["allow_cpu"] is True


def test_paper_fig1_dag_has_every_run_and_evaluation(tmp_path):
    wf = copy_workflow(tmp_path)
    jobs = dry_run_jobs(wf, "results/paper/fig1.pdf")
    n_runs = len(Study.load(PARAMS).runs("fig1"))
    assert n_runs == 6 * 16 * 5
    assert jobs["train_model"] == n_runs and jobs["evaluate_model"] == 2 * n_runs
    assert jobs["collect_results"] == 1 and jobs["draw_accuracy_figure"] == 1


def test_imagenet_experiment_is_wired_to_the_image_folder_manifest_and_resnet50(tmp_path):
    wf = copy_workflow(tmp_path)
    jobs = dry_run_jobs(wf, "results/paper/imagenet.pdf")
    # the manifest, then the 160- and 352-px copies the first two phases read; 4 methods (FGSM from zero and carried,
    # FGSM-RS, GradAlign) x 3 eps, each final and best-clean model evaluated (Wong et al.'s model_best)
    assert jobs == {"prepare_image_folder": 1, "resize_image_folder": 2, "train_model": 12, "evaluate_model": 24,
                    "collect_results": 1, "draw_accuracy_figure": 1}
    cfg = Study.load(PARAMS).train_config("imagenet", "gradalign_l0.1", 4.0, 0)
    assert cfg["data"]["dataset"] == "imagenet" and cfg["model"]["name"] == "resnet50"
    assert cfg["model"]["normalize"] and cfg["optim"]["epochs"] == 15


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_and_exact_reruns(smoke_build, tmp_path):
    wf = copy_build(smoke_build, tmp_path / "wf")  # SMOKE_TARGETS built from a fresh workflow copy
    for name in ("figA", "grad_alignment", "fig1_curves_eps16"):
        assert (wf / f"results/smoke/{name}.pdf").read_bytes().startswith(b"%PDF"), name
    runtime = pd.read_csv(wf / "results/smoke/runtime.csv")
    assert set(runtime["method_label"]) == {"fgsm", "gradalign"} and (runtime["ratio_to_fgsm"] > 0).all()
    aa = pd.read_csv(wf / "results/smoke/autoattack.csv")
    assert set(aa["method_label"]) == {"fgsm_rs", "gradalign"}
    assert (aa["autoattack_acc_mean"] <= aa["clean_acc_mean"]).all()  # AA attacks only correctly classified points
    # The stronger-attacks table: every attack on the same models, the results' numbers, the rebuttal's beside.
    at = pd.read_csv(wf / "results/smoke/attacks_table.csv").set_index("method_label")
    rows = pd.read_csv(wf / "results/smoke/autoattack/results.csv").set_index("method_label")
    for col in ("clean_acc", "pgd_acc", "pgd_acc_max_loss", "aa_apgd_ce_acc", "aa_square_acc", "multitargeted_acc"):
        assert (at[f"{col}_mean"] == 100 * rows[col]).all(), col
    chain = at[["clean_acc_mean", "aa_apgd_ce_acc_mean", "aa_apgd_t_acc_mean", "aa_fab_t_acc_mean",
                "aa_square_acc_mean"]]
    assert (chain.diff(axis=1).iloc[:, 1:] <= 0).all().all()  # each AutoAttack attack runs on the survivors
    assert (at["multitargeted_acc_mean"] <= at["clean_acc_mean"]).all()
    assert at.loc["gradalign", "published_autoattack_acc_mean"] == 44.54
    assert at.loc["fgsm_rs", "published_autoattack_acc_std"] == 0.58
    assert "MultiTargeted" in (wf / "results/smoke/attacks_table.md").read_text()
    pdf, png = wf / "results/smoke/fig1.pdf", wf / "results/smoke/fig1.png"
    assert pdf.read_bytes().startswith(b"%PDF") and png.read_bytes().startswith(b"\x89PNG")
    assert (wf / "results/smoke/fig1_clean.pdf").read_bytes().startswith(b"%PDF")
    # The figure drew exactly the tidy table's numbers (mean over seeds per method, ε, model kind).
    table = pd.read_csv(wf / "results/smoke/fig1/results.csv")
    drawn = pd.read_csv(wf / "results/smoke/fig1_data.csv")
    want = table.groupby(["model_kind", "method_label", "eps"])["pgd_acc"].mean()
    got = drawn[(drawn["metric"] == "pgd_acc") & (drawn["source"] == "measured")].set_index(["model_kind", "method_label", "eps"])["mean"]
    pd.testing.assert_series_equal(got.sort_index(), want.sort_index(), check_names=False)
    assert len(table) == 2 * 2 * 2  # 2 methods × 2 ε × {final, best}
    # Self-contained report with the figure and its caption.
    snakemake(wf, "--report", "report.html", "results/smoke/fig1.pdf")
    html = (wf / "report.html").read_text(errors="replace")
    assert "fig1.pdf" in html and "PGD-50-10 robust accuracy versus training" in html
    # Nothing to do a second time.
    assert dry_run_jobs(wf, *SMOKE_TARGETS) == {}
    # Changing one method's hyperparameter in params.yaml reruns exactly that method's jobs (and what reads them),
    # discarding its stale resume state: tests/test_dvc.py (test_one_hyperparameter_reruns_only_its_method) runs
    # that change through `dvc repro`, which runs this Snakemake.
    runs = wf / "runs/smoke/fig1"
    ga_before = {p: p.read_bytes() for p in sorted(runs.glob("gradalign/*/*/model_final.pt"))}
    assert len(ga_before) == 2
    # A --config override is what the rerun jobs compute: only FGSM's runs are planned again, and the one rerun
    # here records (config.yaml, summary.json, the model files) the overriding value; then it is up to date under
    # the override while the other FGSM run and every evaluation of the two still wait (a training and four
    # evaluations fewer than rebuilding the figure: issue 39).
    override = ["--config", "variants={fgsm: {method: {name: fgsm, fgsm: {alpha: 1.0}}}}"]
    planned = {"train_model": 2, "evaluate_model": 4, "collect_results": 1, "draw_accuracy_figure": 1}
    assert dry_run_jobs(wf, "results/smoke/fig1.pdf", *override) == planned
    run = runs / "fgsm/eps16/seed0"
    snakemake(wf, "--cores", "2", str(run.relative_to(wf) / "summary.json"), *override)
    assert yaml.safe_load((run / "config.yaml").read_text())["method"]["fgsm"]["alpha"] == 1.0
    assert json.loads((run / "summary.json").read_text())["config"]["method"]["fgsm"]["alpha"] == 1.0
    assert torch.load(run / "model_final.pt", weights_only=True)["config"]["method"]["fgsm"]["alpha"] == 1.0
    assert yaml.safe_load((runs / "fgsm/eps4/seed0/config.yaml").read_text())["method"]["fgsm"]["alpha"] != 1.0
    assert {p: p.read_bytes() for p in ga_before} == ga_before
    assert dry_run_jobs(wf, "results/smoke/fig1.pdf", *override) == {**planned, "train_model": 1}


def test_paper_figures_and_tables_of_the_rebuttal_plan_the_right_runs(tmp_path):
    wf = copy_workflow(tmp_path)
    assert dry_run_jobs(wf, "results/paper/figA.pdf") == {"prepare_data": 1, "train_model": 6, "draw_figure": 1}
    assert dry_run_jobs(wf, "results/paper/table7.md") == {"prepare_data": 1, "train_model": 4 * 2 * 5,
                                                          "evaluate_model": 4 * 2 * 5 * 2, "collect_results": 1,
                                                          "make_table": 1}
    assert dry_run_jobs(wf, "results/paper/fig8.pdf") == {"prepare_data": 2, "train_model": 480 + 6 * 12 * 5,
                                                         "evaluate_model": 960 + 6 * 12 * 5, "collect_results": 2,
                                                         "draw_figure": 1}
    assert dry_run_jobs(wf, "results/paper/vs_published.md") == {"prepare_data": 1, "train_model": 480,
                                                                "evaluate_model": 960, "collect_results": 1,
                                                                "make_table": 1}
    svhn = Study.load(PARAMS).train_config("fig1_svhn", "gradalign", 8.0, 0)
    free = Study.load(PARAMS).train_config("fig1_svhn", "free", 8.0, 0)
    assert svhn["data"]["dataset"] == "svhn" and svhn["optim"]["lr_max"] == 0.05 and svhn["optim"]["epochs"] == 15
    assert svhn["optim"]["warmup_epochs"] == 5 and (free["optim"]["epochs"], free["optim"]["lr_max"]) == (45, 0.01)


def test_section3_targets_plan_the_paper_runs(tmp_path):
    wf = copy_workflow(tmp_path)
    jobs = dry_run_jobs(wf, "results/paper/cnn4.md", "results/paper/cnn4_fig5.pdf", "results/paper/cnn4_fig6.pdf",
                        "results/paper/cnn4_fig7.pdf", "results/paper/cnn4_fig11.pdf", "results/paper/lemma2.md")
    assert jobs == {"prepare_data": 1, "train_model": 4 * 5, "evaluate_model": 4 * 5 * 2, "collect_results": 1,
                    "make_table": 1, "draw_figure": 3 + 1, "check_lemma2": 1}
    assert dry_run_jobs(wf, "results/paper/fig4.pdf") == {"prepare_data": 1, "train_model": 3,
                                                         "draw_figure": 1}
    cfg = Study.load(PARAMS).train_config("cnn4", "gradalign", 10.0, 0)
    assert cfg["model"] == {"name": "one_layer_cnn", "width": 4, "normalize": False}
    assert cfg["optim"]["name"] == "adam" and cfg["optim"]["lr_max"] == 0.003 and cfg["optim"]["drop_last"]
    assert cfg["monitor"]["every_iterations"] == 50 and cfg["method"]["gradalign"]["lambda"] is None


@pytest.mark.slow
def test_smoke_section3_figures_tables_and_lemma2(tmp_path):
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    wf = copy_workflow(tmp_path)
    targets = [f"results/smoke/{n}" for n in ("cnn4.md", "cnn4_fig5.pdf", "cnn4_fig6.pdf", "cnn4_fig7.pdf",
                                               "cnn4_fig11.pdf", "fig4.pdf")]
    snakemake(wf, "--cores", "2", *targets)
    for t in targets[1:]:
        assert (wf / t).read_bytes().startswith(b"%PDF"), t
    # Fig. 11 draws exactly the histories' numbers.
    drawn = pd.read_csv(wf / "results/smoke/cnn4_fig11_data.csv")
    for label in ("fgsm", "gradalign"):
        h = pd.read_csv(wf / f"runs/smoke/cnn4/{label}/eps10/seed0/history.csv")
        got = drawn[(drawn["method_label"] == label) & (drawn["metric"] == "test_pgd_acc")]["value"].to_numpy()
        assert list(got) == list(100 * h["test_pgd_acc"])
    assert set(pd.read_csv(wf / "results/smoke/fig4_data.csv")["method_label"]) == {"standard", "fgsm", "pgd10"}
    table = pd.read_csv(wf / "results/smoke/cnn4.csv")
    assert sorted(table["method_label"]) == ["fgsm", "fgsm_rs", "gradalign", "standard"]
    results = pd.read_csv(wf / "results/smoke/cnn4/results.csv")
    final = results[results["model_kind"] == "final"].set_index("method_label")["pgd_acc"]
    assert list(table.set_index("method_label").loc[final.index, "pgd_final"]) == list(100 * final)


@pytest.mark.slow
def test_smoke_rebuttal_table7_fig8_with_synthetic_svhn_and_vs_published(smoke_build, tmp_path):
    """prepare → train → evaluate on SVHN-shaped synthetic data (no SVHN copy here), Fig. 8 drawing exactly its
    tables' numbers and only published_values.yaml's, Table 7 and the comparison with published values. CIFAR-10's
    Fig. 1 runs come built (smoke_build)."""
    source = tmp_path / "source"
    write_separable_dataset(source, n_train=512, n_test=128, dataset="svhn")
    (source / "cifar10.npz").symlink_to(data_source() / "cifar10.npz")
    wf = copy_build(smoke_build, tmp_path / "wf")
    targets = ["results/smoke/fig8.pdf", "results/smoke/table7.md", "results/smoke/vs_published.md"]
    snakemake(wf, "--cores", "2", *targets, env={"FASTADV_DATA_SOURCE": str(source)})
    assert (wf / "results/smoke/fig8.pdf").read_bytes().startswith(b"%PDF")
    drawn = pd.read_csv(wf / "results/smoke/fig8_data.csv")
    for dataset, exp in (("cifar10", "fig1"), ("svhn", "fig1_svhn")):
        table = pd.read_csv(wf / f"results/smoke/{exp}/results.csv")
        final = table[table["model_kind"] == "final"]
        for metric in ("pgd_acc", "clean_acc"):
            want = final.groupby(["method_label", "eps"])[metric].mean()
            got = drawn[(drawn["dataset"] == dataset) & (drawn["metric"] == metric) & (drawn["source"] == "measured")]
            pd.testing.assert_series_equal(got.set_index(["method_label", "eps"])["mean"].sort_index(),
                                           want.sort_index(), check_names=False)
    pub = drawn[drawn["source"] == "published"]
    ref = load_published()
    # drawn in [0, 1], stored in %: 100 × 0.4758 is 47.580000000000005, so compare to rounding error
    assert len(pub) and all(((ref["dataset"] == r.dataset) & (ref["method"] == r.method_label) & (ref["eps"] == r.eps)
                             & (ref["metric"] == r.metric) & ((ref["mean"] - 100 * r.mean).abs() < 1e-9)).any()
                            for r in pub.itertuples())
    t7 = pd.read_csv(wf / "results/smoke/table7.csv")
    assert sorted(set(t7["method_label"])) == ["cure_fgsm", "fgsm", "gradalign"] and set(t7["model_kind"]) == {"final", "best"}
    assert (t7[t7["method_label"] == "fgsm"]["time_vs_fgsm"] == 1.0).all()
    vs = pd.read_csv(wf / "results/smoke/vs_published.csv")
    assert len(vs) and (vs["difference"] == vs["measured_mean"] - vs["published_mean"]).all()
    assert "smoke scale" in (wf / "results/smoke/vs_published.md").read_text().splitlines()[0]


@pytest.mark.slow
def test_smoke_methods_comparison_figure_and_runtime_table(smoke_build, tmp_path):
    wf = copy_build(smoke_build, tmp_path / "wf")  # FGSM's and GradAlign's runs at 16/255 are Fig. 1's
    snakemake(wf, "--cores", "2", "results/smoke/methods_comparison.pdf", "results/smoke/methods_comparison_runtime.md")
    methods = Study.load(PARAMS, "smoke").experiment("methods_comparison")["methods"]
    assert {"gradalign_fd", "nfgsm", "elle", "elle_a"} <= set(methods)
    runtime = pd.read_csv(wf / "results/smoke/methods_comparison_runtime.csv")
    assert sorted(runtime["method_label"]) == sorted(methods) and (runtime["ratio_to_fgsm"] > 0).all()
    table = pd.read_csv(wf / "results/smoke/methods_comparison/results.csv")
    drawn = pd.read_csv(wf / "results/smoke/methods_comparison_data.csv")
    got = drawn[(drawn["metric"] == "pgd_acc") & (drawn["source"] == "measured")]
    want = table.groupby(["method_label", "eps"])["pgd_acc"].mean()
    pd.testing.assert_series_equal(got.set_index(["method_label", "eps"])["mean"].sort_index(), want.sort_index(),
                                   check_names=False)
    assert (wf / "results/smoke/methods_comparison.pdf").read_bytes().startswith(b"%PDF")


def test_threads_per_job_come_from_the_scale_and_experiment(tmp_path):
    """CPU-sized jobs (the quick scale, the single-layer CNN) run on one thread each, two at a time on two
    cores; the rule's threads reach torch through --set (and are no part of the resolved config)."""
    wf = copy_workflow(tmp_path)
    quick = snakemake(wf, "-n", "-p", "--cores", "2", "results/quick/fig1.pdf").stdout
    paper = snakemake(wf, "-n", "-p", "--cores", "2", "results/paper/fig4.pdf").stdout
    cnn = snakemake(wf, "-n", "-p", "--cores", "2", "results/paper/cnn4_fig11.pdf").stdout
    assert quick.count("--set runtime.threads=1") == 8 and "--set runtime.threads=2" not in quick
    assert paper.count("--set runtime.threads=2") == 3
    assert cnn.count("--set runtime.threads=1") == 2


def test_report_holds_every_built_figure_and_table_by_experiment_with_its_config(smoke_build, tmp_path):
    """`fastadv report` (make report): Snakemake's HTML report of what was built at a scale, one category per
    experiment a target is drawn from, each caption with the resolved experiment its job was given (issue 40)."""
    import re
    import subprocess
    import sys
    from pathlib import Path

    from fastadv.paper.targets import find

    wf = copy_build(smoke_build, tmp_path / "wf")
    fastadv = str(Path(sys.executable).parent / "fastadv")
    r = subprocess.run([fastadv, "report", "--scale", "smoke"], cwd=wf, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr[-3000:]
    html = (wf / "results/smoke/report.html").read_text()
    categories = json.loads(re.search(r"var categories = (\{.*?\});\n", html).group(1))
    reported = {f: cat for cat, subs in categories.items() for files in subs.values() for f in files}
    built = sorted(str(p.relative_to(wf)) for p in (wf / "results/smoke").glob("*.pdf") if "_clean" not in p.name)
    built += sorted(str(p.relative_to(wf)) for p in (wf / "results/smoke").glob("*.md"))
    assert {t for t in SMOKE_TARGETS if t.endswith((".pdf", ".md"))} <= set(built) and set(reported) == set(built)
    for f, category in reported.items():
        t, _ = find(Path(f).stem)
        assert category.split(" + ")[0] == t.source, (f, category)
    assert html.count("The resolved experiment the job was given") >= len(built)
    r = subprocess.run([fastadv, "report", "--scale", "quick"], cwd=wf, capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith("fastadv: error: nothing built at scale")


def test_learning_curves_hold_every_run_history_and_agree_with_the_results_table(smoke_build):
    """results/<scale>/<experiment>/curves.csv (rule collect_curves, fastadv curves; dvc.yaml plots it): every
    evaluation of every run's history.csv, with the status and CO flags the results table gives the run."""
    curves = pd.read_csv(smoke_build / "results/smoke/fig1/curves.csv")
    table = pd.read_csv(smoke_build / "results/smoke/fig1/results.csv")
    runs = sorted(smoke_build.glob("runs/smoke/fig1/*/*/*/history.csv"))
    assert len(runs) == 4 and sorted(curves["run"].unique()) == sorted(str(h.parent.relative_to(smoke_build))
                                                                      for h in runs)
    for h in runs:
        rel = str(h.parent.relative_to(smoke_build))
        got, want = curves[curves["run"] == rel].reset_index(drop=True), pd.read_csv(h)
        for c in ("epoch", "iteration", "test_clean_acc", "test_pgd_acc", "grad_alignment"):
            pd.testing.assert_series_equal(got[c], want[c], check_names=False)
        row = table[table["path"].str.contains(rel.replace("runs/", "results/").replace("/fig1/", "/fig1/evals/"))]
        assert len(row) == 2 and (row["train_status"] == got["status"][0]).all(), rel
        flagged = got.loc[got["co"] == 1, "epoch"]
        assert set(got["co"]) <= {0, 1}
        assert (row["co_epoch"].isna().all() and flagged.empty) or (row["co_epoch"] == flagged.iloc[0]).all(), rel
        assert (got["method"] == row["method"].iloc[0]).all() and (got["eps"] == row["train_eps"].iloc[0]).all()
