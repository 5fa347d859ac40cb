"""One command for a data-parallel run: ``fastadv train --ranks N …`` starts its N ranks with the standard
launchers, so a workflow job (one shell line) or a user needs no launcher of their own.

- inside a SLURM job (``SLURM_JOB_ID`` set, ``srun`` on the PATH): ``srun --ntasks=N --cpus-per-task=T`` — the
  job's allocation, one task per rank, on one node or several (the workflow's imagenet jobs are submitted with
  ``tasks``/``gpu`` resources, docs/guide/many-gpus.md); each task finds its rank in SLURM's variables
  (fastadv.training.distributed.slurm_environment);
- elsewhere: torchrun (``python -m torch.distributed.run --standalone --nproc_per_node=N``) on this machine.

The job's ``runtime.threads`` are shared: each rank gets ⌊threads / N⌋ (at least 1), recorded in its config.
Inside a launched rank (torchrun's ``WORLD_SIZE`` or a SLURM step of several tasks) nothing is launched again.

Pre-emption: ranks stopped by SIGTERM/SIGUSR1 save the state and exit 75, but torchrun reports any non-zero
exit of a rank as its own failure (exit 1). So each rank that stopped this way leaves a mark in a folder the
launch made (``FASTADV_PREEMPTED_MARKS``), and the launch exits 75 when a mark is there: a rank raises the
pre-emption only after rank 0 has saved the state for all. A SIGTERM/SIGUSR1 sent to the launching process itself
is passed on to the launcher as SIGTERM (torchrun and srun forward it to the ranks; SIGUSR1 would end torchrun).
Torch-free.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile

EXIT_PREEMPTED = 75  # EX_TEMPFAIL: a run stopped by SIGTERM/SIGUSR1 saved its state; rerun the command to continue
MARKS = "FASTADV_PREEMPTED_MARKS"


def strip_ranks(argv: list[str]) -> list[str]:
    """``argv`` without its ``--ranks N`` / ``--ranks=N``."""
    out, skip = [], False
    for a in argv:
        if skip:
            skip = False
        elif a == "--ranks":
            skip = True
        elif not a.startswith("--ranks="):
            out.append(a)
    return out


def inside_rank(env=os.environ) -> bool:
    return "WORLD_SIZE" in env or int(env.get("SLURM_STEP_NUM_TASKS", "1")) > 1


def rank_command(argv: list[str], ranks: int, threads: int, env=os.environ) -> tuple[list[str], dict] | None:
    """(command, environment) starting ``ranks`` ranks of ``fastadv <argv>``, or None when this process is to
    train itself."""
    if ranks <= 1 or inside_rank(env):
        return None
    per_rank = max(1, threads // ranks) if threads else 0
    args = [*strip_ranks(argv), "--set", f"runtime.threads={per_rank}"]
    env = {**env, **({"OMP_NUM_THREADS": str(per_rank)} if per_rank else {})}
    if env.get("SLURM_JOB_ID") and shutil.which("srun", path=env.get("PATH")):
        cpus = [f"--cpus-per-task={per_rank}"] if per_rank else []
        return ["srun", f"--ntasks={ranks}", *cpus, sys.executable, "-m", "fastadv", *args], env
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={ranks}",
            "-m", "fastadv", *args], env


def mark_preempted(env=os.environ) -> None:
    """In a launched rank that stopped for a pre-emption (after rank 0 saved the state): say so to the launch."""
    folder = env.get(MARKS)
    if folder and os.path.isdir(folder):
        open(os.path.join(folder, f"rank{env.get('RANK', env.get('SLURM_PROCID', '0'))}"), "w").close()


def run_ranks(command: list[str], env: dict) -> int:
    """Run the launcher; its exit status, or 75 when the ranks were pre-empted (module docstring)."""
    with tempfile.TemporaryDirectory(prefix="fastadv-ranks-") as marks:
        child = subprocess.Popen(command, env={**env, MARKS: marks})
        forward = lambda signum, frame: child.send_signal(signal.SIGTERM)  # noqa: E731
        old = {s: signal.signal(s, forward) for s in (signal.SIGTERM, signal.SIGUSR1)}
        try:
            code = child.wait()
        finally:
            for s, handler in old.items():
                signal.signal(s, handler)
        return EXIT_PREEMPTED if code != 0 and os.listdir(marks) else code
