# Config validation and small input functions. The science is in src/fastadv.
import json
import os

from snakemake.utils import validate

from fastadv.config import DATASETS
from fastadv.data import FOLDER_DATASETS
from fastadv.study import Study, validate_study

validate(config, schema="../schemas/config.schema.yaml")
# The CLI reads the same file (so --configfile overrides reach it); Snakemake's --config does not.
PARAMS = workflow.configfiles[-1] if workflow.configfiles else "params.yaml"
STUDY_DOC = validate_study(config)
SCALES = list(STUDY_DOC["scales"]) or ["paper"]
EXPERIMENTS = list(STUDY_DOC["experiments"])
HISTORY = "runs/{scale}/{experiment}/{variant}/eps{eps}/seed{seed}/history.csv"
EVAL_RESULT = "results/{scale}/{experiment}/evals/{variant}/eps{eps}/seed{seed}/{kind}.json"

# Figures drawn like Fig. 1 and runtime tables: output name -> experiment.
ACCURACY_EXPERIMENTS = [e for e in ("fig1", "methods_comparison", "imagenet") if e in EXPERIMENTS]
RUNTIME_TABLES = {"runtime": "fig1", "methods_comparison_runtime": "methods_comparison"}

wildcard_constraints:
    scale="|".join(SCALES),
    accuracy_experiment="|".join(ACCURACY_EXPERIMENTS),
    runtime_table="|".join(RUNTIME_TABLES),
    experiment="|".join(EXPERIMENTS),
    kind="final|best",
    seed=r"\d+",
    eps=r"[0-9.]+",


def study(scale):
    return Study(STUDY_DOC, None if scale == "paper" and "paper" not in STUDY_DOC["scales"] else scale)


def eps_tag(eps):
    return f"{float(eps):g}"


def default_targets():
    """The paper's figures and tables at paper scale."""
    return [f"results/paper/{name}" for name in ("fig1.pdf", "figA.pdf", "grad_alignment.pdf", "runtime.md", "autoattack.md")]


def runtime_results(wildcards):
    return f"results/{wildcards.scale}/{RUNTIME_TABLES[wildcards.runtime_table]}/results.csv"


def dataset_file(wildcards):
    """The prepared data a run reads: a verified .npz, or an image folder's manifest (.json)."""
    dataset = study(wildcards.scale).experiment(wildcards.experiment)["dataset"]
    return f"data/{dataset}.json" if dataset in FOLDER_DATASETS else f"data/{dataset}.npz"


def run_config(wildcards):
    """Resolved train config of a run: a params value, so changing a hyperparameter reruns exactly its runs."""
    cfg = study(wildcards.scale).train_config(
        wildcards.experiment, wildcards.variant, float(wildcards.eps), int(wildcards.seed)
    )
    cfg["runtime"].pop("threads")
    return json.dumps(cfg, sort_keys=True)


def eval_config(wildcards):
    return json.dumps(study(wildcards.scale).eval_config(wildcards.experiment), sort_keys=True)


def resource(name):
    return lambda wildcards: study(wildcards.scale).resources()[name]


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


def histories_of(experiment):
    """Input function: the history.csv of every run of ``experiment`` at the job's scale
    (restricted to the job's ``eps`` wildcard and the first seed when it has one)."""

    def histories(wildcards):
        runs = study(wildcards.scale).runs(experiment)
        if hasattr(wildcards, "eps"):
            first = runs[0]["seed"]
            runs = [r for r in runs if eps_tag(r["eps"]) == wildcards.eps and r["seed"] == first]
        return [
            HISTORY.format(
                scale=wildcards.scale,
                experiment=experiment,
                variant=r["variant"],
                eps=eps_tag(r["eps"]),
                seed=r["seed"],
            )
            for r in runs
        ]

    return histories
