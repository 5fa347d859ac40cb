"""How long a CPU target (the demo, the sweep) will take on this machine, from a probe of its first seconds.

Each target was timed from a fresh clone on one machine, the reference (``estimate_reference.yaml``: the machine,
the command, the wall time). A machine's speed on this workload is probed as the seconds of a few training steps of
FGSM and FGSM+GradAlign at the target's scale, on the threads one of its jobs gets, on a random batch (the time of
a step does not depend on the pixels); the same probe ran on the reference. The expected wall time is the
reference's times the geometric mean of the two methods' ratios: the CPU-bound work of these targets is those steps
(and PGD, the same kernels). A rough figure — memory bandwidth shared by two jobs, turbo and the other jobs' mix
are not probed — that tells a user on a slow machine what to expect before the long jobs start.

The reference also holds a digest of the target's resolved configs: the test suite fails when a target changes
without a new timing (``fastadv estimate TARGET --calibrate --wall-seconds S`` after timing it).
"""
from __future__ import annotations

import hashlib
import json
import math
import statistics
from pathlib import Path

from fastadv.errors import FastAdvError, unknown_choice

REFERENCE = Path(__file__).with_name("estimate_reference.yaml")
HEADER = ("# Wall times of the CPU targets, each timed from a fresh clone alone on the cores of one machine, and that "
          "machine's\n# probe (fastadv.performance.estimate). Written by `fastadv estimate TARGET --calibrate "
          "--wall-seconds S`.\n")
PROBE_METHODS = ("fgsm", "gradalign")  # the cheapest and the dearest step of the CPU targets
PROBE_STEPS, PROBE_WARMUP, PROBE_REPEATS = 3, 1, 3  # ≈ 10 s at the quick scale on one thread (model builds included)


def read_reference(path=REFERENCE) -> dict:
    import yaml

    return yaml.safe_load(Path(path).read_text())


def cpu_name() -> str:
    """The CPU's model name and the widest vector ISA torch's kernels use here (AVX2, AVX512, …)."""
    import platform

    import torch

    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:  # not Linux: the platform's name stands
        pass
    return f"{name}, {torch.backends.cpu.get_cpu_capability()}"


def target_digest(study, experiments: list[str]) -> str:
    """SHA-256 of every resolved train and evaluation config of the targets' runs (threads left out)."""
    from fastadv.workflow.runs import run_identity

    configs = [run_identity(study, e, r) for e in experiments for r in study.runs(e)]
    return hashlib.sha256(json.dumps(configs, sort_keys=True).encode()).hexdigest()


def probe(study, experiment: str) -> dict[str, float]:
    """Seconds per training step of each probe method, as ``experiment`` runs it at its largest ε, on the threads
    of one of its jobs; the median of interleaved repeats."""
    import torch

    from fastadv.performance.benchmark import interleaved, random_batch, step_runner
    from fastadv.config.run_config import as_train_config
    from fastadv.training.runtime import set_threads

    exp = study.experiment(experiment)
    set_threads(study.resources(experiment)["train_threads"])
    device = torch.device("cpu")
    runners = {}
    for method in PROBE_METHODS:
        cfg = as_train_config(study.train_config(experiment, method, max(exp["eps"]), exp["seeds"][0]))
        x, y = random_batch(cfg.phases[0].batch_size)  # the CPU targets train on CIFAR-10-sized images
        runners[method] = step_runner(cfg, method, x, y, PROBE_STEPS, PROBE_WARMUP, device)
    seconds = interleaved(runners, PROBE_REPEATS, device)
    return {m: statistics.median(v) / PROBE_STEPS for m, v in seconds.items()}


def expected_seconds(reference: dict, target: str, here: dict[str, float]) -> tuple[float, float]:
    """(expected wall seconds of ``target`` on this machine, this machine's slowdown against the reference)."""
    ref = reference["probe_seconds"]
    slowdown = math.exp(statistics.mean(math.log(here[m] / ref[m]) for m in PROBE_METHODS))
    return reference["targets"][target]["wall_seconds"] * slowdown, slowdown


def target_study(reference: dict, target: str, params=None):
    """The study at the target's scale (the packaged or ./params.yaml unless ``params``)."""
    from fastadv.config.params import default_params
    from fastadv.config.study import Study

    if target not in reference["targets"]:
        raise unknown_choice("target to estimate", target, reference["targets"])
    return Study.load(params or default_params(), reference["targets"][target]["scale"])


def estimate(target: str, reference: dict, params=None) -> str:
    """The line a user reads before the long jobs start."""
    study, t = target_study(reference, target, params), reference["targets"][target]
    here = probe(study, t["experiments"][0])
    seconds, slowdown = expected_seconds(reference, target, here)
    steps = " / ".join(f"{here[m]:.3f}" for m in PROBE_METHODS)
    ref_steps = " / ".join(f"{reference['probe_seconds'][m]:.3f}" for m in PROBE_METHODS)
    stale = "" if target_digest(study, t["experiments"]) == t["config_digest"] else (
        " Its configs changed since that timing: take this as a rough guide.")
    return (f"{target}: expected about {seconds / 60:.0f} min on this machine ({cpu_name()}): its FGSM / GradAlign "
            f"steps take {steps} s, {slowdown:.2f}x the reference's {ref_steps} s ({reference['machine']}), where "
            f"`{t['command']}` took {t['wall_seconds'] / 60:.1f} min.{stale}")


def calibrate(target: str, wall_seconds: float, path=REFERENCE, params=None) -> dict:
    """Make this machine the reference: its probe, and ``target``'s wall time (measured here, alone on the cores,
    with the target's ``command``) with the digest of the configs it ran. Every target of the file is timed on one
    machine: calibrate them all on it."""
    from fastadv import atomic

    import yaml

    if not wall_seconds > 0:
        raise FastAdvError(f"--wall-seconds must be > 0 (the measured wall time of the target), got {wall_seconds}")
    ref = read_reference(path)
    study = target_study(ref, target, params)
    ref.update(machine=cpu_name(), probe_seconds=probe(study, ref["targets"][target]["experiments"][0]))
    ref["targets"][target].update(wall_seconds=float(wall_seconds),
                                  config_digest=target_digest(study, ref["targets"][target]["experiments"]))
    atomic.write_text(path, HEADER + yaml.safe_dump(ref, sort_keys=False, allow_unicode=True))
    return ref
