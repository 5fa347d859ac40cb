# Config validation and small input functions. The science is in src/fastadv.
import json

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from fastadv.config.params import DATASETS, FOLDER_DATASETS
from fastadv.config.study import Study, typed_overrides, validate_study
from fastadv.workflow.schema import schema_file

# Nested --config values arrive as strings (Snakemake reads them with YAML's BaseLoader): give them
# the types params.yaml would, then validate the whole config once.
update_config(config, typed_overrides(dict(workflow.config_settings.config)))
validate(config, schema=schema_file())  # = ../schemas/config.schema.yaml plus installed methods
STUDY_DOC = validate_study(config)
SCALE = STUDY_DOC["scale"]  # the scale the unscaled targets results/<name> build
SCALES = sorted({*STUDY_DOC["scales"], "paper"})
EXPERIMENTS = list(STUDY_DOC["experiments"])
HISTORY = "runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/history.csv"
EVAL_RESULT = "results/{scale}/{experiment}/evals/{variant}/eps{eps}/seed{seed}/{kind}.json"

# Figures drawn like Fig. 1 and runtime tables: output name -> experiment.
ACCURACY_EXPERIMENTS = [e for e in ("fig1", "methods_comparison", "imagenet") if e in EXPERIMENTS]
RUNTIME_TABLES = {"runtime": "fig1", "methods_comparison_runtime": "methods_comparison"}
# Figs. 4 and 11 (statistics at every evaluation): output name -> (experiment, variants drawn; None: all).
METRICS_FIGURES = {"fig4": ("fig4", None), "cnn4_fig11": ("cnn4", ["fgsm", "gradalign"])}
# Figs. 5-7 of the single-layer CNN (its FGSM run, first seed): output name -> `fastadv figure` name.
CNN_FIGURES = {"cnn4_fig5": "filter_weights", "cnn4_fig6": "filter_norms", "cnn4_fig7": "feature_maps"}

wildcard_constraints:
    scale="|".join(SCALES),
    accuracy_experiment="|".join(ACCURACY_EXPERIMENTS),
    runtime_table="|".join(RUNTIME_TABLES),
    metrics_figure="|".join(METRICS_FIGURES),
    cnn_figure="|".join(CNN_FIGURES),
    experiment="|".join(EXPERIMENTS),
    kind="final|best",
    seed=r"\d+",
    eps=r"[0-9.]+",


def study(scale):
    return Study(STUDY_DOC, scale)


def eps_tag(eps):
    return f"{float(eps):g}"


def default_targets():
    """The paper's figures and tables, at the configured scale."""
    return [f"results/{name}" for name in ("fig1.pdf", "figA.pdf", "grad_alignment.pdf", "runtime.md", "autoattack.md")]


def scaled_result(wildcards):
    return f"results/{SCALE}/{wildcards.name}"


def runtime_results(wildcards):
    return f"results/{wildcards.scale}/{RUNTIME_TABLES[wildcards.runtime_table]}/results.csv"


def dataset_file(wildcards):
    """The prepared data a run reads: a verified .npz, or an image folder's manifest (.json)."""
    return dataset_of(wildcards.experiment)(wildcards)


def run_config(wildcards):
    """Resolved train config of a run, passed whole to `fastadv train --resolved`: the job runs exactly
    the config Snakemake planned it with, and changing a hyperparameter reruns exactly its runs.
    Threads are the rule's (--set), so they are left out and do not trigger reruns."""
    cfg = study(wildcards.scale).train_config(
        wildcards.experiment, wildcards.variant, float(wildcards.eps), int(wildcards.seed)
    )
    cfg["runtime"].pop("threads")
    return json.dumps(cfg, sort_keys=True)


def train_priority(wildcards):
    """Longest trainings first (fastadv.workflow.guard.training_priority)."""
    from fastadv.workflow.guard import training_priority

    return training_priority(study(wildcards.scale).train_config(
        wildcards.experiment, wildcards.variant, float(wildcards.eps), int(wildcards.seed)))


def eval_config(wildcards):
    cfg = study(wildcards.scale).eval_config(wildcards.experiment)
    cfg.pop("threads")
    return json.dumps(cfg, sort_keys=True)


def experiment_config(experiment=None, others=()):
    """Input function: the resolved experiment a figure or table is drawn for, with its scale (and the
    further experiments of a figure that draws several, e.g. Fig. 8: CIFAR-10 and SVHN)."""

    def resolved(wildcards):
        if experiment:
            name = experiment
        elif hasattr(wildcards, "metrics_figure"):
            name = METRICS_FIGURES[wildcards.metrics_figure][0]
        else:
            name = getattr(wildcards, "accuracy_experiment", None) or RUNTIME_TABLES[wildcards.runtime_table]
        s = study(wildcards.scale)
        return json.dumps({"scale": wildcards.scale, "experiment": s.experiment(name),
                           "others": [s.experiment(o) for o in others]}, sort_keys=True)

    return resolved


def resource(name):
    return lambda wildcards: study(wildcards.scale).resources(wildcards.experiment)[name]


def experiment_evals(wildcards):
    s = study(wildcards.scale)
    kinds = s.experiment(wildcards.experiment)["models"]
    return [
        EVAL_RESULT.format(
            scale=wildcards.scale,
            experiment=wildcards.experiment,
            variant=r["variant"],
            eps=eps_tag(r["eps"]),
            seed=r["seed"],
            kind=kind,
        )
        for r in s.runs(wildcards.experiment)
        for kind in kinds
    ]


def run_file(scale, experiment, run, name):
    return HISTORY.replace("history.csv", name).format(scale=scale, experiment=experiment, variant=run["variant"],
                                                       eps=eps_tag(run["eps"]), seed=run["seed"])


def metrics_histories(wildcards):
    """Histories drawn in Fig. 4 / Fig. 11: the experiment's first ε and seed, the figure's variants."""
    experiment, variants = METRICS_FIGURES[wildcards.metrics_figure]
    runs = study(wildcards.scale).runs(experiment)
    first = runs[0]
    return [run_file(wildcards.scale, experiment, r, "history.csv") for r in runs
            if r["eps"] == first["eps"] and r["seed"] == first["seed"] and (variants is None or r["variant"] in variants)]


def cnn_run(name):
    """Input function: file ``name`` of the single-layer CNN's FGSM run of the first seed (Figs. 5-7)."""

    def path(wildcards):
        run = next(r for r in study(wildcards.scale).runs("cnn4") if r["variant"] == "fgsm")
        return run_file(wildcards.scale, "cnn4", run, name)

    return path


def fidelity_model(wildcards):
    """The final model of fig1's FGSM run at its largest ε and first seed (catastrophically overfitted
    where the scale shows CO): the model the fidelity table measures each switch on."""
    runs = [r for r in study(wildcards.scale).runs("fig1") if r["variant"] == "fgsm"]
    run = max(runs, key=lambda r: (r["eps"], -r["seed"]))
    return run_file(wildcards.scale, "fig1", run, "model_final.pt")


def histories_of(experiment):
    """Input function: the history.csv of every run of ``experiment`` at the job's scale
    (restricted to the job's ``eps`` wildcard and the first seed when it has one)."""

    def histories(wildcards):
        runs = study(wildcards.scale).runs(experiment)
        if hasattr(wildcards, "eps"):
            first = runs[0]["seed"]
            runs = [r for r in runs if eps_tag(r["eps"]) == wildcards.eps and r["seed"] == first]
        return [run_file(wildcards.scale, experiment, r, "history.csv") for r in runs]

    return histories


def dataset_of(experiment):
    """Input function: the prepared data file of ``experiment``'s dataset."""

    def path(wildcards):
        dataset = study(wildcards.scale).experiment(experiment)["dataset"]
        return f"data/{dataset}.json" if dataset in FOLDER_DATASETS else f"data/{dataset}.npz"

    return path


def refuse_gpu_scale_on_cpu():
    """Stop before the first job when the run would train at a GPU scale without CUDA (fastadv.workflow.guard).
    Not under a cluster executor: its jobs run on other nodes."""
    if not workflow.local_exec:
        return
    import torch

    from fastadv.workflow.guard import cpu_refusal

    jobs = [(job.rule.name, dict(job.wildcards_dict)) for job in workflow.dag.needrun_jobs()]
    message = cpu_refusal(jobs, study, torch.cuda.is_available(), STUDY_DOC["allow_cpu"])
    if message:
        raise WorkflowError(message)
