"""The Snakemake workflow: schema in sync, lint clean, DAG shape, smoke pipeline end to end."""
import pandas as pd
import pytest
import yaml

from fastadv.study import Study, json_schema
from tests.helpers import PARAMS, REPO, copy_workflow, data_source, snakemake


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


SMOKE_TARGETS = ["results/smoke/fig1.pdf", "results/smoke/fig1_curves_eps16.pdf", "results/smoke/figA.pdf",
                 "results/smoke/grad_alignment.pdf", "results/smoke/runtime.md", "results/smoke/autoattack.md"]


def dry_run_jobs(wf, *targets) -> dict:
    """Job counts per rule from the dry run's "Job stats" table ({} when nothing is to be done)."""
    r = snakemake(wf, "-n", "--cores", "2", *targets)
    counts, in_table = {}, False
    for line in r.stdout.splitlines():
        parts = line.split()
        if line.startswith("Job stats:"):
            in_table = True
        elif in_table and parts and parts[0] == "total":
            break
        elif in_table and len(parts) == 2 and parts[1].isdigit():
            counts[parts[0]] = int(parts[1])
    return counts


def test_paper_fig1_dag_has_every_run_and_evaluation(tmp_path):
    wf = copy_workflow(tmp_path)
    jobs = dry_run_jobs(wf, "results/paper/fig1.pdf")
    n_runs = len(Study.load(PARAMS).runs("fig1"))
    assert n_runs == 6 * 16 * 5
    assert jobs["train_model"] == n_runs and jobs["evaluate_model"] == 2 * n_runs
    assert jobs["collect_results"] == 1 and jobs["plot_fig1"] == 1


def test_imagenet_experiment_is_wired_to_the_image_folder_manifest_and_resnet50(tmp_path):
    wf = copy_workflow(tmp_path)
    jobs = dry_run_jobs(wf, "results/paper/imagenet.pdf")
    assert jobs == {"prepare_image_folder": 1, "train_model": 9, "evaluate_model": 9, "collect_results": 1,
                    "plot_fig1": 1}
    cfg = Study.load(PARAMS).train_config("imagenet", "gradalign", 4.0, 0)
    assert cfg["data"]["dataset"] == "imagenet" and cfg["model"]["name"] == "resnet50"
    assert cfg["model"]["normalize"] and cfg["optim"]["epochs"] == 15


@pytest.mark.slow
def test_smoke_pipeline_end_to_end_and_exact_reruns(tmp_path):
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    wf = copy_workflow(tmp_path)
    snakemake(wf, "--cores", "2", *SMOKE_TARGETS)
    for name in ("figA", "grad_alignment", "fig1_curves_eps16"):
        assert (wf / f"results/smoke/{name}.pdf").read_bytes().startswith(b"%PDF"), name
    runtime = pd.read_csv(wf / "results/smoke/runtime.csv")
    assert set(runtime["method_label"]) == {"fgsm", "gradalign"} and (runtime["ratio_to_fgsm"] > 0).all()
    aa = pd.read_csv(wf / "results/smoke/autoattack.csv")
    assert set(aa["method_label"]) == {"fgsm_rs", "gradalign"}
    assert (aa["autoattack_acc_mean"] <= aa["clean_acc_mean"]).all()  # AA attacks only correctly classified points
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
    # Changing one method's hyperparameter reruns exactly that method's jobs (and what reads them).
    runs = wf / "runs/smoke/fig1"
    fgsm_before = {p: p.read_bytes() for p in sorted(runs.glob("fgsm/*/*/*.pt"))}
    ga_before = {p: p.read_bytes() for p in sorted(runs.glob("gradalign/*/*/model_final.pt"))}
    assert len(fgsm_before) == 2 * 3 and len(ga_before) == 2  # final, best, state per fgsm run
    params = wf / "params.yaml"
    params.write_text(params.read_text().replace(
        "gradalign: {method: {name: gradalign}, optim: {lr_max: 0.3}}",
        "gradalign: {method: {name: gradalign, gradalign: {lambda: 0.5}}, optim: {lr_max: 0.3}}"))
    r = snakemake(wf, "-n", "--cores", "2", "results/smoke/fig1.pdf")
    jobs = dry_run_jobs(wf, "results/smoke/fig1.pdf")
    assert jobs == {"train_model": 2, "evaluate_model": 4, "collect_results": 1, "plot_fig1": 1}, r.stdout
    variants = [w for w in r.stdout.splitlines() if "wildcards:" in w and "variant=" in w]
    assert len(variants) == 6 and all("variant=gradalign" in w for w in variants), variants
    # … and executing that plan works: the stale interrupted-run state of the old config is
    # discarded, not refused, and only the gradalign models change.
    snakemake(wf, "--cores", "2", "results/smoke/fig1.pdf")
    assert {p: p.read_bytes() for p in fgsm_before} == fgsm_before
    assert all(p.read_bytes() != b for p, b in ga_before.items())
    for p in ga_before:
        assert yaml.safe_load((p.parent / "config.yaml").read_text())["method"]["gradalign"]["lambda"] == 0.5
    table = pd.read_csv(wf / "results/smoke/fig1/results.csv")
    assert len(table) == 2 * 2 * 2 and (table["train_status"] == "completed").all()
    assert dry_run_jobs(wf, "results/smoke/fig1.pdf") == {}


@pytest.mark.slow
def test_smoke_methods_comparison_figure_and_runtime_table(tmp_path):
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    wf = copy_workflow(tmp_path)
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
