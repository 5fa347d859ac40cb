# Config validation and small input functions. The science is in src/fastadv.
import json
import os

from snakemake.exceptions import WorkflowError
from snakemake.utils import update_config, validate

from fastadv.data.registry import DATASETS, FOLDER_DATASETS
from fastadv.config.study import Study, resized_images, validate_study
from fastadv.workflow.overrides import typed_overrides
from fastadv.workflow.runs import run_home
from fastadv.paper import targets
from fastadv.workflow.guard import train_job_resources
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

# The paper's figures and tables (fastadv.paper.targets): wildcard constraints of the three rules drawing them.
FIGURE_TARGETS = targets.name_regex(targets.names("figure", EXPERIMENTS, clean_panel=False))
ACCURACY_TARGETS = targets.name_regex(targets.names("figure", EXPERIMENTS, clean_panel=True))
TABLE_TARGETS = targets.name_regex(targets.names("table", EXPERIMENTS))
FIGURE_TABLE_TARGETS = targets.name_regex(targets.names("figure_table", EXPERIMENTS))
CHECK_CAPTIONS = {name: caption for name, (_, caption) in targets.CHECKS.items()}

wildcard_constraints:
    scale="|".join(SCALES),
    experiment="|".join(EXPERIMENTS),
    kind="final|best",
    seed=r"\d+",
    eps=r"[0-9.]+",


_STUDIES = {}


def study(scale):
    """The study at ``scale``, one object per scale: it keeps what it resolved for the next job's input function."""
    if scale not in _STUDIES:
        _STUDIES[scale] = Study(STUDY_DOC, scale)
    return _STUDIES[scale]


def eps_tag(eps):
    return f"{float(eps):g}"


def default_targets():
    """The paper's figures and tables, at the configured scale."""
    return [f"results/{name}" for name in ("fig1.pdf", "figA.pdf", "grad_alignment.pdf", "runtime.md", "autoattack.md",
                                           "attacks_table.md")]


def scaled_result(wildcards):
    return f"results/{SCALE}/{wildcards.name}"


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


def resource(name):
    return lambda wildcards: study(wildcards.scale).resources(wildcards.experiment)[name]


def train_job(name):
    """A training job's scheduler request (data-parallel ranks: fastadv.workflow.guard.train_job_resources)."""
    return lambda wildcards: train_job_resources(study(wildcards.scale).resources(wildcards.experiment))[name]


def experiment_evals(wildcards):
    """The evaluations of an experiment's runs, each where its run lives (an earlier experiment's when that one
    has the same run with the same configs: fastadv.workflow.runs.run_home)."""
    s = study(wildcards.scale)
    kinds = s.experiment(wildcards.experiment)["models"]
    return [
        EVAL_RESULT.format(
            scale=wildcards.scale,
            experiment=run_home(s, wildcards.experiment, r),
            variant=r["variant"],
            eps=eps_tag(r["eps"]),
            seed=r["seed"],
            kind=kind,
        )
        for r in s.runs(wildcards.experiment)
        for kind in kinds
    ]


def experiment_histories(wildcards):
    """The history.csv of each of an experiment's runs, where the run lives (run_home)."""
    return [run_file(wildcards.scale, wildcards.experiment, r, "history.csv")
            for r in study(wildcards.scale).runs(wildcards.experiment)]


def experiment_run_dirs(wildcards):
    """The folders of an experiment's runs (those of experiment_histories)."""
    return [os.path.dirname(h) for h in experiment_histories(wildcards)]


def run_file(scale, experiment, run, name):
    """A file of ``experiment``'s ``run``, in the directory of the experiment the run lives in (run_home)."""
    home = run_home(study(scale), experiment, run)
    return HISTORY.replace("history.csv", name).format(scale=scale, experiment=home, variant=run["variant"],
                                                       eps=eps_tag(run["eps"]), seed=run["seed"])


def fidelity_model(wildcards):
    """The final model of fig1's FGSM run at its largest ε and first seed (catastrophically overfitted
    where the scale shows CO): the model the fidelity table measures each switch on."""
    runs = [r for r in study(wildcards.scale).runs("fig1") if r["variant"] == "fgsm"]
    run = max(runs, key=lambda r: (r["eps"], -r["seed"]))
    return run_file(wildcards.scale, "fig1", run, "model_final.pt")


def target_inputs(wildcards):
    """Named inputs of a figure or table: the results tables and run histories its target reads, and the
    other files of the runs it draws (snapshots, summary, the prepared data)."""
    t, eps = targets.find(wildcards.target)
    inputs = {"results": [f"results/{wildcards.scale}/{e}/results.csv" for e in t.results], "histories": [],
              "run_files": []}
    if t.histories:
        runs = targets.runs_drawn(t, study(wildcards.scale).runs(t.source), eps)
        inputs["histories"] = [run_file(wildcards.scale, t.source, r, "history.csv") for r in runs]
    if t.histories == "fgsm_run":
        inputs["run_files"] = [run_file(wildcards.scale, t.source, runs[0], name) for name in
                               ("snapshots.npz", "summary.json")] + dataset_of(t.source)(wildcards)
    return inputs


def target_field(name):
    return lambda wildcards: getattr(targets.find(wildcards.target)[0], name)


def target_options(wildcards):
    return " ".join(targets.options(*targets.find(wildcards.target)))


def report_category(wildcards):
    """The report's category of a figure or table: the experiment it is drawn from (with the others it reads)."""
    t, _ = targets.find(wildcards.target)
    return " + ".join(dict.fromkeys([t.source, *t.results]))


def target_experiments(wildcards):
    """The resolved experiment a figure or table is drawn for, with its scale (and the further experiments of
    one that draws several, e.g. Fig. 8: CIFAR-10 and SVHN)."""
    t, _ = targets.find(wildcards.target)
    s = study(wildcards.scale)
    return json.dumps({"scale": wildcards.scale, "experiment": s.experiment(t.source),
                       "others": [s.experiment(o) for o in t.results[1:]]}, sort_keys=True)


def dataset_of(experiment):
    """Input function: the prepared data file of ``experiment``'s dataset."""

    def path(wildcards):
        s = study(wildcards.scale)
        dataset = s.experiment(experiment)["dataset"]
        if dataset not in FOLDER_DATASETS:
            return [f"data/{dataset}.npz"]
        return [f"data/{dataset}.json"] + [f"data/{dataset}-{n}.json" for n in resized_images(s, experiment)]

    return path


def refuse_gpu_scale_on_cpu():
    """Stop before the first job when the run would train at a GPU scale without CUDA (fastadv.workflow.guard).
    Not under a cluster executor: its jobs run on other nodes."""
    if not workflow.local_exec:
        return
    from fastadv.workflow.guard import cpu_refusal

    def has_cuda():
        import torch

        return torch.cuda.is_available()

    jobs = [(job.rule.name, dict(job.wildcards_dict)) for job in workflow.dag.needrun_jobs()]
    message = cpu_refusal(jobs, study, has_cuda, STUDY_DOC["allow_cpu"])
    if message:
        raise WorkflowError(message)


def zoo_config(wildcards):
    """The zoo resolved at the scale ({dir, evaluate, models}), passed whole to `fastadv zoo --resolved`;
    threads are the rule's (--set)."""
    zoo = study(wildcards.scale).zoo()
    zoo["evaluate"].pop("threads")
    return json.dumps(zoo, sort_keys=True)


def zoo_inputs(wildcards):
    """The listed files that are there (an absent one is a row "not downloaded", not a missing input) and the
    prepared data of their datasets; a file that appears later changes the inputs, so the table is rebuilt."""
    from fastadv.config.zoo import listed_path

    zoo = study(wildcards.scale).zoo()
    present = [e for e in zoo["models"] if os.path.isfile(listed_path(e, zoo["dir"]))]
    data = sorted({f"data/{e['dataset']}.json" if e["dataset"] in FOLDER_DATASETS else f"data/{e['dataset']}.npz"
                   for e in present})
    return {"files": [str(listed_path(e, zoo["dir"])) for e in present], "data": data}
