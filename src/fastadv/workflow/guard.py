"""Guard rail of the workflow: a run that would train at a GPU scale on a machine without CUDA
stops before its first job, saying what it would cost and what to run instead.

A job asks for GPUs when its ``resources.gpu`` (of its scale and experiment) is above 0 (the
``paper`` scale does; the CPU scales ``quick`` and ``smoke`` and the CPU-sized experiment ``cnn4``
set 0). ``--config allow_cpu=true`` lets a user insist. Under a
cluster executor (SLURM) the jobs run on other nodes, so the submitting machine is not checked.

Also what a job asks the scheduler for: the priority of a training job (its cost), and the requests of a
training job of several data-parallel ranks (:func:`train_job_resources`).
"""
from __future__ import annotations

import math
from collections.abc import Callable

from fastadv.methods.registry import spec_of

# Training images per dataset (the subset setting may take fewer).
TRAIN_IMAGES = {"cifar10": 50_000, "svhn": 73_257, "mnist": 60_000, "imagenet": 1_281_167}
# One forward + backward pass of PreActResNet-18 (width 64) on a CIFAR-10 batch of 128 on a
# 2-core CPU (AMD EPYC, 2 threads, torch 2.14.1): half an FGSM iteration, measured with
# `fastadv bench-train --scale paper --methods standard fgsm gradalign --iterations 2 --repeats 2`
# (FGSM 2.14 s per iteration, 836 s per epoch; GradAlign 3.66× FGSM).
CPU_SECONDS_PER_PASS = 1.07
PGD_EVAL_PASSES_PER_POINT = 50 * 10 + 1  # PGD-50-10 on a point no restart breaks (an upper bound)


def training_passes(cfg: dict, images: int | None = None) -> float:
    """Batch forward/backward passes of one training run (its config resolved; passes per iteration: each
    method's SPEC, fastadv.methods.registry); ``images``: the training set's size when known (a prepared image
    folder), else the dataset's."""
    o, m = cfg["optim"], cfg["method"]
    images = images or TRAIN_IMAGES.get(cfg["data"]["dataset"], 50_000)
    if cfg["data"]["subset"] is not None:
        images = min(images, cfg["data"]["subset"])
    phases = cfg["data"]["phases"] or [{"epochs": o["epochs"], "batch_size": o["batch_size"]}]
    starts = [0] + [ph["epochs"] for ph in phases[:-1]]
    iterations = sum((ph["epochs"] - a) * math.ceil(images / ph["batch_size"]) for a, ph in zip(starts, phases))
    return iterations * spec_of(m["name"]).passes_per_iteration(m)


def train_job_resources(resources: dict) -> dict:
    """What a training job of ``resources.ranks`` data-parallel ranks asks a scheduler for (Snakemake resources,
    read by the SLURM executor plugin): ``gpu`` GPUs per rank in all, one task per rank (``tasks``,
    ``tasks_per_gpu``), the job's threads shared by its ranks (``cpus_per_task``), and, with several ranks,
    ``mpi`` = srun: the plugin then runs the job's shell line once in the allocation, where ``fastadv train
    --ranks`` starts the tasks itself (fastadv.training.launch)."""
    ranks, gpu = resources["ranks"], resources["gpu"]
    return {"gpu": gpu * ranks, "tasks": ranks, "tasks_per_gpu": 1 if gpu else 0,
            "cpus_per_task": max(1, resources["train_threads"] // ranks), "mpi": "srun" if ranks > 1 else ""}


# `fastadv train` at a GPU scale on a CPU goes ahead when it is this small (a test, a tiny override of the scale).
CLI_CPU_HOURS_LIMIT = 1.0


def train_refusal(cfg: dict, scale: str, gpu: int, cuda: bool, allow_cpu: bool, images: int | None = None) -> str | None:
    """The message that stops ``fastadv train`` of one run at a scale asking for GPUs (``gpu`` > 0) on a
    machine without CUDA, when it would take more than CLI_CPU_HOURS_LIMIT on the CPU; None when it may go on."""
    if cuda or allow_cpu or gpu == 0:
        return None
    hours = training_passes(cfg, images) * CPU_SECONDS_PER_PASS / 3600
    if hours < CLI_CPU_HOURS_LIMIT:
        return None
    return (f"refusing to train at scale {scale} (it asks for GPUs: resources.gpu = {gpu}) without a CUDA device: "
            f"on this machine's CPU that is roughly {hours:,.1f} h ({CPU_SECONDS_PER_PASS} s per forward/backward "
            "pass of PreActResNet-18 on a 128-image batch, 2 CPU cores); for a CPU run use --scale quick (or smoke), "
            "to run this anyway add --allow-cpu")


def training_priority(cfg: dict) -> float:
    """Scheduling priority of a training job: its estimated passes. The workflow starts the longest
    trainings first (longest-processing-time-first), so the last jobs to start are short ones and the job
    slots finish together; the quick demo lost ≈ 3 min when a GradAlign training started last and ran
    alone while the other core idled (docs/performance.md)."""
    return training_passes(cfg)


def cpu_refusal(jobs: list[tuple[str, dict]], study_of, has_cuda: Callable[[], bool], allow_cpu: bool) -> str | None:
    """The message that stops a run, or None when it may go on.

    ``jobs``: (rule name, wildcards) of every job the run would execute; ``study_of(scale)``: the
    :class:`fastadv.config.study.Study` at that scale. The run is refused when it would train at a scale
    that asks for GPUs, no CUDA device is visible and the user did not set ``allow_cpu``. ``has_cuda`` is
    asked only then: it imports torch (~1.6 s of every Snakemake run otherwise, CPU scales included).
    """
    if allow_cpu:
        return None
    gpu_jobs = [(rule, w) for rule, w in jobs
                if rule in ("train_model", "evaluate_model") and study_of(w["scale"]).resources(w["experiment"])["gpu"] > 0]
    trainings = [w for rule, w in gpu_jobs if rule == "train_model"]
    if not trainings or has_cuda():
        return None
    evaluations = [w for rule, w in gpu_jobs if rule == "evaluate_model"]
    passes = sum(training_passes(study_of(w["scale"]).train_config(w["experiment"], w["variant"], float(w["eps"]),
                                                                   int(w["seed"]))) for w in trainings)
    eval_points = sum(study_of(w["scale"]).eval_config(w["experiment"])["n_points"] or 10_000 for w in evaluations)
    train_hours = passes * CPU_SECONDS_PER_PASS / 3600
    eval_hours = eval_points * PGD_EVAL_PASSES_PER_POINT * CPU_SECONDS_PER_PASS / 128 / 3600
    scales = sorted({w["scale"] for w in trainings})
    return (f"refusing to start {len(trainings)} training(s) and {len(evaluations)} evaluation(s) at scale "
            f"{', '.join(scales)} (it asks for GPUs: resources.gpu > 0) without a CUDA device: on this machine's "
            f"CPU that is roughly {train_hours:,.0f} h of training and up to {eval_hours:,.0f} h of evaluation "
            f"(at {CPU_SECONDS_PER_PASS} s per forward/backward pass of PreActResNet-18 on a 128-image batch, "
            "measured on 2 CPU cores). The CPU demo: snakemake --cores 2 results/fig1.pdf --config scale=quick; "
            "to run this anyway: add --config allow_cpu=true")
