"""The smoke pipeline through the project's SLURM profile, on a real one-node SLURM cluster.

tests/slurm/cluster.sh installs SLURM where it can (root + apt-get), starts munged, MariaDB,
slurmdbd, slurmctld and slurmd with all state under a temp dir, and stops them by PID at the
end, also when the test fails. Where SLURM cannot be installed the test is skipped, with the
reason. The cluster is started once for the module; each test reads accounting for its own jobs only (by
their working directory). A few minutes on 2 cores.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from fastadv.training.loop import FINISHED
from tests.helpers import REPO, copy_workflow

BIN = str(Path(sys.executable).parent)
CLUSTER_SH = REPO / "tests" / "slurm" / "cluster.sh"
CANNOT_INSTALL = 77  # cluster.sh's exit status where SLURM cannot be installed here
pytestmark = pytest.mark.slow  # minutes each: a cluster, and jobs that wait for its status checks


def _tail(path: Path, n: int = 3000) -> str:
    return path.read_text(errors="replace")[-n:] if path.is_file() else ""


def _accounting(env: dict, workdir: Path, fields: str, steps: bool = False) -> list[list[str]]:
    """sacct's rows (``fields``, then the job id) of the jobs submitted from ``workdir``, with their steps when
    ``steps``: the module's cluster also holds the other tests' jobs."""
    out = subprocess.run(["sacct", "-a", "-n", "-P", "--starttime=2000-01-01", "-o", f"JobID,WorkDir,{fields}"],
                         env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line.strip()]
    mine = {job for job, wd, *_ in rows if wd == str(workdir) and "." not in job}  # allocations, not steps
    return [[job, *rest] for job, _, *rest in rows if job in mine or (steps and job.split(".")[0] in mine)]


@pytest.fixture(scope="module")
def slurm_cluster(tmp_path_factory):
    """A private SLURM cluster with accounting; yields the environment its clients need."""
    # Short path: munge's and MariaDB's unix sockets live under it (108-byte limit).
    root = tmp_path_factory.mktemp("slurm")
    log = root / "cluster.log"
    try:
        with log.open("w") as out:  # a file, not a pipe: the daemons must not hold our stdout
            rc = subprocess.run(["bash", str(CLUSTER_SH), "start", str(root)], stdin=subprocess.DEVNULL,
                                stdout=out, stderr=subprocess.STDOUT).returncode
        if rc == CANNOT_INSTALL:
            pytest.skip(log.read_text().strip().splitlines()[-1])
        if rc != 0:
            logs = "\n".join(f"--- {p.name}\n{_tail(p, 1500)}" for p in sorted((root / "log").glob("*")))
            pytest.fail(f"cluster.sh start failed ({rc}):\n{_tail(log)}\n{logs}")
        yield {"SLURM_CONF": str(root / "etc" / "slurm.conf")}
    finally:
        subprocess.run(["bash", str(CLUSTER_SH), "stop", str(root)], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


@pytest.mark.slurm
def test_smoke_pipeline_and_the_imagenet_ranks_through_slurm_profile(tmp_path, slurm_cluster, source):
    """The smoke Fig. 1 and one run of the smoke scale's imagenet experiment through the SLURM profile, in one
    Snakemake invocation (the two DAGs share the plugin's status polls instead of waiting for them one after the
    other). Each imagenet training job is submitted with 2 tasks (resources tasks/mpi/cpus_per_task,
    fastadv.workflow.guard.train_job_resources) and `fastadv train --ranks 2` starts them with srun inside its
    allocation; rank 0 alone writes the run's files."""
    import json

    from tests.helpers import write_cifar_image_tree

    src = tmp_path / "source"  # one data source for both: CIFAR-10's copy and a small ImageNet-layout tree
    write_cifar_image_tree(src / "imagenet", source / "cifar10.npz", train_per_class=8, val_per_class=5)
    (src / "cifar10.npz").symlink_to(source / "cifar10.npz")
    wf = tmp_path / "wf"
    wf.mkdir()
    copy_workflow(wf)
    env = {**os.environ, **slurm_cluster, "PATH": BIN + os.pathsep + os.environ["PATH"],
           "FASTADV_DATA_SOURCE": str(src)}
    # The profile unchanged: it names no account or partition, so the plugin must find root's account on
    # the test cluster (sacctmgr) and sbatch the default partition; only the plugin's first status check
    # comes sooner than its default 40 s: 1 s after a submission or a finished job, then 10 s later each time no job
    # has finished (the plugin's back-off), so each of the chain's seconds-long jobs is seen done ~4 s after it ends
    # (at 5 s: ~12; 114 s → 86 s for this test alone). Fig. 1 of one method at one ε (a --config override reaches the
    # jobs through SLURM).
    imagenet = "results/smoke/imagenet/evals/fgsm_rs/eps4/seed0/final.json"
    r = subprocess.run(
        [f"{BIN}/snakemake", "--profile", "workflow/profiles/slurm",
         "--slurm-init-seconds-before-status-checks", "1", "results/smoke/fig1.pdf", imagenet,
         "--config", "scales={smoke: {experiments: {fig1: {methods: [fgsm], eps: [16]}}}}"],
        cwd=wf, env=env, capture_output=True, text=True, timeout=1800)
    assert r.returncode == 0, f"snakemake through SLURM failed:\n{r.stdout[-3000:]}\n{r.stderr[-6000:]}"
    assert (wf / "results/smoke/fig1.pdf").read_bytes().startswith(b"%PDF")

    # Every job that computes went through SLURM and accounting saw it complete (the plugin's comment names the
    # rule); the data download and the seconds-long tables and figures ran here, as local rules.
    jobs = _accounting(env, wf, "Comment,State")
    assert jobs and all(state == "COMPLETED" for _, _, state in jobs), jobs
    rules = sorted(comment.split("_wildcards_")[0].removeprefix("rule_") for _, comment, _ in jobs)
    assert rules == sorted(["train_model"] * (1 + 1) + ["evaluate_model"] * (2 + 1) + ["prepare_image_folder"]
                           + ["resize_image_folder"] * 2), jobs
    for rule in ("prepare_data", "collect_results", "draw_accuracy_figure"):
        assert f"localrule {rule}:" in r.stdout + r.stderr, rule
    assert sorted(p.relative_to(wf / "runs/smoke/fig1").parts[:2] for p in (wf / "runs/smoke/fig1").glob("*/*")) == [
        ("fgsm", "eps16")]

    # The imagenet run: two ranks, as SLURM tasks of its job.
    run = wf / "runs/smoke/imagenet/fgsm_rs/eps4/seed0"
    s = json.loads((run / "summary.json").read_text())
    assert s["distributed"] == {"world_size": 2, "backend": "gloo"} and s["status"] in FINISHED
    log = (wf / "logs/train_model/smoke/imagenet/fgsm_rs/eps4/seed0.log").read_text()
    assert "starting 2 ranks: srun --ntasks=2 --cpus-per-task=1" in log, log[-3000:]
    assert sum(log.count(f"{status}: ") for status in FINISHED) == 1, log[-3000:]  # rank 0 alone reports
    assert not [p.name for p in run.iterdir() if p.name.startswith(".")]  # no temp file of another rank left
    steps = _accounting(env, wf, "NTasks,State", steps=True)
    assert any(n == "2" and state == "COMPLETED" for _, n, state in steps), steps  # the 2-task step of the ranks
    assert json.loads((wf / imagenet).read_text())["also"]["protocol"] == "wong_imagenet_pgd50_10"
    # Fig. 1's training jobs asked for one task: only the imagenet job's step ran two.
    fig1_steps = [n for job, n, _ in steps if "." in job and job.split(".")[0] in {
        j for j, comment, _ in jobs if "_fig1_" in comment}]
    assert fig1_steps and set(fig1_steps) <= {"1"}, steps


@pytest.mark.slurm
def test_a_two_task_slurm_step_trains_data_parallel(tmp_path, slurm_cluster, synthetic_root):
    """``srun --ntasks=2 fastadv train …`` in a batch job: each task a rank (the environment comes from SLURM's:
    fastadv.training.distributed.slurm_environment), rank 0 writes the files, and the run is bit for bit the
    two-rank run torchrun makes on this machine."""
    import shlex

    import torch

    from tests.test_distributed import BN_FREE, _args, torchrun

    sets = BN_FREE + ["method.name=gradalign", "method.eps=4"]
    args = " ".join(shlex.quote(a) for a in _args(tmp_path / "slurm", synthetic_root, sets))
    script = tmp_path / "job.sh"
    script.write_text(f"#!/bin/bash\nexport OMP_NUM_THREADS=1\nsrun --ntasks=2 --cpus-per-task=1 {BIN}/fastadv {args}\n")
    env = {**os.environ, **slurm_cluster, "PATH": BIN + os.pathsep + os.environ["PATH"]}
    env = {k: v for k, v in env.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    r = subprocess.run(["sbatch", "--wait", "--ntasks=2", "--cpus-per-task=1", "--mem=3000", "--account=fastadv",
                        "--partition=debug", "-o", str(tmp_path / "job.log"), str(script)],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, f"{r.stdout}\n{r.stderr}\n{_tail(tmp_path / 'job.log')}"
    log = (tmp_path / "job.log").read_text()
    assert sum(log.count(f"{status}: ") for status in FINISHED) == 1, log[-3000:]  # rank 0 alone reports
    import json

    assert json.loads((tmp_path / "slurm/summary.json").read_text())["distributed"] == {"world_size": 2,
                                                                                        "backend": "gloo"}
    torchrun(tmp_path / "torchrun", synthetic_root, sets)
    a, b = (torch.load(tmp_path / d / "model_final.pt", weights_only=True)["state_dict"] for d in ("slurm", "torchrun"))
    assert all(torch.equal(a[k], b[k]) for k in b)
