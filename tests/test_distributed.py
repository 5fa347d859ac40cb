"""Data-parallel training for real: torch.distributed with gloo on the CPU, two ranks of one thread each, launched
by torchrun or, to kill or signal one rank, as two processes with torchrun's environment
(fastadv.training.distributed states the semantics tested here)."""
import json
import os
import shutil
import signal
from contextlib import nullcontext
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.command_server import command_path
from tests.helpers import REPO

TORCHRUN = Path(sys.executable).with_name("torchrun")
# The single-layer CNN has no batch norm: two ranks must make the single process's updates. 325 training images
# in batches of 32: 11 steps per epoch, the last batch of 5 split 3 + 2 (unequal shards, weighted losses).
BN_FREE = ["model.name=one_layer_cnn", "model.width=4", "data.subset=325", "optim.batch_size=32", "optim.epochs=2",
           "optim.drop_last=false"]
# A batch-norm model long enough to be interrupted: 16 steps per epoch, history every 4 steps.
WITH_BN = ["model.name=preact_resnet18", "model.width=4", "data.subset=512", "optim.batch_size=32", "optim.epochs=3",
           "optim.lr_max=0.01",
           "monitor.every_iterations=4", "runtime.checkpoint_every=1"]


def _args(out, root, sets):
    common = ["--scale", "smoke", "--out", str(out), "--set", f"data.root={root}", "--set", "data.dataset=svhn"]
    base = ["monitor.test_points=16", "monitor.train_points=16", "monitor.pgd_steps=1", "runtime.threads=1",
            "runtime.progress=never", "runtime.dist_timeout_s=30", "method.eps=8"]
    return ["train", *common, *[a for s in base + sets for a in ("--set", s)]]


def _env(**extra):
    env = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", **{k: str(v) for k, v in extra.items()}}


def _free_port() -> int:
    return _free_ports(1)[0]


def _free_ports(n: int) -> list[int]:
    """``n`` distinct free ports (each socket held until all are chosen)."""
    socks = [socket.socket() for _ in range(n)]
    try:
        for s in socks:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def torchrun(out, root, sets, nproc=2, check=True):
    cmd = [str(TORCHRUN), f"--nproc_per_node={nproc}", f"--master_port={_free_port()}", "-m", "fastadv",
           *_args(out, root, sets)]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=600)
    assert not check or r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return r


def single(out, root, sets):
    """The single-process reference run, trained in this process: the updates compared with two ranks' are the
    same, without an interpreter and torch started per run (~5 s each on the slow CPU; 2 per comparison)."""
    from fastadv.cli import main

    here = os.getcwd()
    os.chdir(REPO)  # as the ranks run: the params file ./params.yaml
    try:
        assert main(_args(out, root, sets)) == 0
    finally:
        os.chdir(here)


def single_process(out, root, sets, *options):
    """A single-process run, or a launch (``--ranks``), as its own process (a fork of the command server:
    tests/command_server.py): its exit code and error line."""
    return subprocess.run(["fastadv", *_args(out, root, sets), *options], cwd=REPO,
                          env={**_env(), "PATH": command_path()}, capture_output=True, text=True, timeout=600)


def ranks(out, root, sets, world=2):
    """Rank processes started as torchrun would (its environment), each killable on its own; ``out`` a folder, or
    one per rank."""
    port, outs = _free_port(), out if isinstance(out, list) else [out] * world
    return [subprocess.Popen([sys.executable, "-m", "fastadv", *_args(outs[r], root, sets)], cwd=REPO,
                             env=_env(RANK=r, LOCAL_RANK=r, WORLD_SIZE=world, MASTER_ADDR="127.0.0.1",
                                      MASTER_PORT=port), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            for r in range(world)]


def weights(out):
    return torch.load(Path(out) / "model_final.pt", weights_only=True)["state_dict"]


def wait_for_rows(out, n, procs, timeout=300):
    t = time.time()
    while time.time() - t < timeout:
        h = Path(out) / "history.csv"
        if h.is_file() and len(pd.read_csv(h)) >= n:
            return
        assert all(p.poll() is None for p in procs), "the run ended before it could be interrupted"
        time.sleep(0.05)
    raise AssertionError(f"no {n} history rows in {timeout} s")


def _assert_roundoff_apart(a: dict, b: dict, yardstick: dict) -> None:
    """``a`` and ``b`` differ by no more than float round-off: at most 10 times what the single process differs
    from itself with another summation order (``yardstick``: 1 thread against 2), and never by 1e-3 of a weight.
    (On this task at ε = 8/255 the sign-based attacks make training chaotic: 1 against 2 threads already moves
    weights by 0.15, so equality is shown at ε = 4/255, where round-off stays round-off.)"""
    for k in b:
        gap, noise = (a[k] - b[k]).abs().max().item(), (yardstick[k] - b[k]).abs().max().item()
        assert gap <= 10 * noise + 1e-6 and gap <= 1e-3 * max(b[k].abs().max().item(), 1.0), (k, gap, noise)


# The two-rank runs the module's tests read, by label: the comparisons' at 4/255 on the BN-free task (a test's
# `method`), and the uninterrupted runs that the fault tests' interrupted ones must end equal to (`uses_ddp_run`).
COMPARED = BN_FREE + ["method.eps=4"]
DDP_RUNS = {**{m: COMPARED + [f"method.name={m}"] for m in ("fgsm_rs", "gradalign", "standard", "fgsm", "nfgsm",
                                                            "elle")},
            "pgd": COMPARED + ["method.name=pgd", "method.pgd.steps=2"],
            "fgsm_carried": COMPARED + ["method.name=fgsm", "method.fgsm.start=carried", "optim.drop_last=true"],
            "whole_gradalign": WITH_BN + ["method.name=gradalign"],
            "whole_fgsm_rs": WITH_BN + ["method.name=fgsm_rs"]}


@pytest.fixture(scope="module")
def ddp(request, tmp_path_factory, synthetic_root) -> Path:
    """The two-rank run of every label a selected test reads, in one torchrun launch (tests/ddp_runs.py: the
    runs one after another in the same two rank processes, each joining and leaving its process group as a launch
    of its own does); the folder holds one run folder per label. The module runs on one worker
    (tests/conftest.py ONE_WORKER). Its first user in a whole run is a slow fault test (they come first in this
    file), which pays for the launch; with ``-m "not slow"``, the first comparison (two runs)."""
    items = [item for item in request.session.items if "ddp" in getattr(item, "fixturenames", ())]
    wanted = {item.callspec.params["method"] for item in items if hasattr(item, "callspec")}
    wanted |= {m.args[0] for item in items for m in item.iter_markers("uses_ddp_run")}
    base = tmp_path_factory.mktemp("ddp")
    runs = base / "runs.json"
    labels = [m for m in DDP_RUNS if m in wanted]
    runs.write_text(json.dumps([{"port": port, "args": _args(base / m, synthetic_root, DDP_RUNS[m])}
                                for m, port in zip(labels, _free_ports(len(labels)))]))
    cmd = [str(TORCHRUN), "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "tests.ddp_runs", str(runs)]
    r = subprocess.run(cmd, cwd=REPO, env=_env(), capture_output=True, text=True, timeout=900)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-3000:]
    return base


def _stat(pid: int) -> list[str]:
    """The fields of /proc/<pid>/stat after the process's name (state, ppid, …): "pid (name) state ppid …", and the
    name may hold spaces and parentheses."""
    return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()


def _descendants(launch: int) -> list[int]:
    """The processes started under process ``launch``, at any depth (torchrun starts each rank in a session of
    its own, so neither its process group nor its session holds them: the tree is followed through the parents)."""
    parent = {}
    for d in Path("/proc").iterdir():
        try:
            if d.name.isdigit():
                parent[int(d.name)] = int(_stat(int(d.name))[1])
        except OSError:  # a process that ended while we looked
            continue

    def under_launch(pid):
        while pid > 1:
            pid = parent.get(pid, 0)
            if pid == launch:
                return True
        return False

    return [pid for pid in parent if under_launch(pid)]


def _rank_pid(launch: int, rank: int) -> int:
    """The process of rank ``rank`` under process ``launch`` (torchrun's workers carry RANK in their environment)."""
    for pid in _descendants(launch):
        try:
            if f"RANK={rank}".encode() in Path(f"/proc/{pid}/environ").read_bytes().split(b"\0"):
                return pid
        except OSError:
            continue
    raise AssertionError(f"no rank {rank} under process {launch}")


def _kill_tree(launch: subprocess.Popen) -> None:
    """SIGKILL to the launcher and every rank at once; returns when none runs any more (a killpg of torchrun's
    group would leave its ranks running, and writing into the run folder)."""
    tree = [launch.pid, *_descendants(launch.pid)]
    assert len(tree) >= 3, tree  # torchrun and its two ranks
    for pid in tree:
        os.kill(pid, signal.SIGKILL)
    launch.wait()

    def running(pid):  # the ranks are reparented and reaped; until then a zombie (state Z) runs no more
        try:
            return _stat(pid)[0] != "Z"
        except OSError:
            return False

    while any(map(running, tree[1:])):
        time.sleep(0.01)


@pytest.mark.slow  # two two-rank launches (the uninterrupted run is the ddp fixture's)
@pytest.mark.uses_ddp_run("whole_gradalign")
def test_kill_9_of_a_two_rank_run_then_rerun_gives_the_uninterrupted_run(ddp, tmp_path, synthetic_root):
    sets, whole = DDP_RUNS["whole_gradalign"], ddp / "whole_gradalign"
    cmd = [str(TORCHRUN), "--nproc_per_node=2", f"--master_port={_free_port()}", "-m", "fastadv",
           *_args(tmp_path / "cut", synthetic_root, sets)]
    p = subprocess.Popen(cmd, cwd=REPO, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_for_rows(tmp_path / "cut", 4, [p])
    _kill_tree(p)
    assert not (tmp_path / "cut/summary.json").exists()
    torchrun(tmp_path / "cut", synthetic_root, sets)
    a, b = weights(tmp_path / "cut"), weights(whole)
    assert all(torch.equal(a[k], b[k]) for k in b), "resumed two-rank run differs from the uninterrupted one"
    cols = [c for c in pd.read_csv(whole / "history.csv").columns if c != "train_seconds"]
    pd.testing.assert_frame_equal(pd.read_csv(tmp_path / "cut/history.csv")[cols], pd.read_csv(whole / "history.csv")[cols])


@pytest.mark.slow
@pytest.mark.uses_ddp_run("whole_fgsm_rs")
def test_sigterm_on_one_rank_stops_the_run_with_75_and_only_the_same_state_resumes(ddp, tmp_path, synthetic_root):
    """SIGTERM to one rank, three ways in one run: ranks started as torchrun starts them each exit 75; the ranks
    of a run whose folders differ (one node sees no state.pt) refuse to train, on every rank, before the first
    step; `fastadv train --ranks 2` (torchrun, which reports a rank's 75 as its own failure) exits 75. Each
    rerun resumes, and the run ends bit-identical to an uninterrupted one."""
    sets = DDP_RUNS["whole_fgsm_rs"]
    run = tmp_path / "run"
    procs = ranks(run, synthetic_root, sets)
    wait_for_rows(run, 3, procs)
    procs[1].send_signal(signal.SIGTERM)
    codes = [p.wait(timeout=120) for p in procs]
    assert codes == [75, 75], [p.stderr.read()[-2000:] for p in procs]
    assert (run / "state.pt").is_file() and not (run / "summary.json").exists()
    r = single_process(run, synthetic_root, sets)
    assert r.returncode == 2 and r.stderr.strip().splitlines()[-1] == (
        f"fastadv: error: {run / 'state.pt'} was saved by a run on 2 rank(s); resume it on as many "
        "(this launch has 1), or use another output directory"), r.stderr[-2000:]

    shutil.copytree(run, tmp_path / "other")
    (tmp_path / "other/state.pt").unlink()  # rank 1's node does not see the run folder rank 0 wrote
    state = (run / "state.pt").read_bytes()
    procs = ranks([run, tmp_path / "other"], synthetic_root, sets)
    errors = [p.stderr.read() for p in procs]
    assert [p.wait(timeout=120) for p in procs] == [2, 2], errors
    step = torch.load(run / "state.pt", weights_only=True)["progress"]["global_step"]
    for r, err in enumerate(errors):
        line = err.strip().splitlines()[-1]
        assert line.startswith(f"fastadv: error: the ranks of {[run, tmp_path / 'other'][r]} did not resume the same "
                               f"state (rank 0: state.pt of step {step}, sha256 ") and line.endswith(
            "; rank 1: no state.pt); every rank must see the same run folder (one file system shared by the nodes)"), err
    assert (run / "state.pt").read_bytes() == state and len(pd.read_csv(run / "history.csv")) >= 3

    launch = subprocess.Popen([sys.executable, "-m", "fastadv", *_args(run, synthetic_root, sets), "--ranks", "2"],
                              cwd=REPO, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              start_new_session=True)
    wait_for_rows(run, 8, [launch])
    os.kill(_rank_pid(launch.pid, 1), signal.SIGTERM)
    assert launch.wait(timeout=120) == 75, launch.stderr.read()[-3000:]
    assert len(pd.read_csv(run / "history.csv")) < 13 and not (run / "summary.json").exists()
    r = single_process(run, synthetic_root, sets, "--ranks", "2")
    assert r.returncode == 0, r.stderr[-3000:]
    a, b = weights(run), weights(ddp / "whole_fgsm_rs")
    assert all(torch.equal(a[k], b[k]) for k in b)


def _compare_with_single_process(method, ddp, tmp_path, synthetic_root):
    sets = DDP_RUNS[method]
    single(tmp_path / "one", synthetic_root, sets)
    single(tmp_path / "two_threads", synthetic_root, sets + ["runtime.threads=2"])
    _assert_roundoff_apart(weights(ddp / method), weights(tmp_path / "one"), weights(tmp_path / "two_threads"))


@pytest.mark.parametrize("method", ["fgsm_rs", "gradalign"])
def test_two_ranks_make_the_single_process_update(method, ddp, tmp_path, synthetic_root):
    _compare_with_single_process(method, ddp, tmp_path, synthetic_root)
    h2, h1 = pd.read_csv(ddp / method / "history.csv"), pd.read_csv(tmp_path / "one/history.csv")
    assert h2["iteration"].max() == h1["iteration"].max() == 22  # ≥ 20 steps, the last batch of each epoch split 3 + 2
    # training statistics are the global batch's (summed over ranks), not rank 0's shard
    pd.testing.assert_series_equal(h2["train_acc"], h1["train_acc"], rtol=1e-5)
    pd.testing.assert_series_equal(h2["train_loss"], h1["train_loss"], rtol=1e-4)
    summary = pd.read_json(ddp / method / "summary.json", typ="series")
    assert summary["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert summary["config"]["method"]["name"] == method
    assert sorted(p.name for p in (ddp / method).iterdir()) == sorted(p.name for p in (tmp_path / "one").iterdir())


@pytest.mark.slow
@pytest.mark.parametrize("method", ["standard", "fgsm", "fgsm_carried", "nfgsm", "pgd", "elle"])
def test_every_data_parallel_method_makes_the_single_process_update(method, ddp, tmp_path, synthetic_root):
    """fgsm_carried: each rank carries its shard's rows of the noise buffer, the single process's rows when every
    batch is whole (a short batch's rows differ: fastadv.methods.fgsm)."""
    _compare_with_single_process(method, ddp, tmp_path, synthetic_root)
    config = pd.read_json(ddp / method / "summary.json", typ="series")["config"]
    assert config["method"]["name"] == method.split("_")[0]
    assert config["method"]["fgsm"]["start"] == ("carried" if method == "fgsm_carried" else "zero")


def test_a_dead_rank_makes_the_other_exit_nonzero_not_hang(tmp_path, synthetic_root):
    procs = ranks(tmp_path / "run", synthetic_root, WITH_BN + ["method.name=fgsm"])
    wait_for_rows(tmp_path / "run", 2, procs)
    procs[1].kill()
    t = time.time()
    code = procs[0].wait(timeout=90)  # runtime.dist_timeout_s = 30 bounds it even without a closed connection
    err = procs[0].stderr.read()
    assert code not in (0, 75) and time.time() - t < 90
    assert "lost contact with the other ranks" in err.strip().splitlines()[-1], err[-2000:]


def test_a_method_that_cannot_train_data_parallel_is_refused_by_name(tmp_path, synthetic_root):
    r = torchrun(tmp_path / "run", synthetic_root, BN_FREE + ["method.name=gradalign_fd"], check=False)
    assert r.returncode != 0
    assert ("fastadv: error: method 'gradalign_fd' cannot train data-parallel (its loss is not a mean of "
            "per-example terms DDP may average); valid on 2 ranks: elle, fgsm, fgsm_rs, gradalign, nfgsm, pgd, "
            "standard") in r.stderr
    assert not (tmp_path / "run").exists(), "a refused run leaves nothing behind"


# -- GradAlign's penalty over ranks: a mean over the whole batch's examples with non-zero input gradients -----------
# A ReLU network whose hidden units are all off at x = 0 and anywhere within ε of it: such an example's input
# gradient is exactly 0 (the case GradAlign's mask exists for). Rows 0-3 are rank 0's shard, all alive; of rank 1's
# rows 4-7 only row 7, so the ranks hold 4 and 1 of the 5 examples the penalty averages over.
PENALTY_BATCH, DEAD_ROWS = 8, (4, 5, 6)


def _penalty_setup():
    from fastadv.methods.gradalign import GradAlign

    gen = torch.Generator().manual_seed(0)
    x = 0.5 + 0.5 * torch.rand(PENALTY_BATCH, 3, 2, 2, dtype=torch.float64, generator=gen)
    x[list(DEAD_ROWS)] = 0.0
    y = torch.arange(PENALTY_BATCH) % 3
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 16), torch.nn.ReLU(),
                                torch.nn.Linear(16, 3)).double()
    with torch.no_grad():  # units on at x ≥ 0.5 (0.2·12·0.5 > 1), off within 8/255 of 0 (0.35·12·8/255 < 1)
        model[1].weight.copy_(0.2 + 0.05 * torch.randn(16, 12, dtype=torch.float64, generator=gen))
        model[1].bias.fill_(-1.0)
        model[3].weight.copy_(torch.randn(3, 16, dtype=torch.float64, generator=gen))
        model[3].bias.zero_()
    # λ large: a ReLU network's input gradient moves little within ε, and the penalty must weigh in the update
    method = GradAlign(8 / 255, {"lambda": 1e4, "alpha": 1.25}, "cifar10")
    return model, method, x, y


def _penalty_step(model, method, x, y, offset=0):
    """One GradAlign step of SGD (lr 1): the loop's train_step with the loop's shard weight and generator."""
    from fastadv.methods import StepContext
    from fastadv.shard import batch_shard
    from fastadv.training.step import mixed_precision, train_step

    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    autocast, scaler = mixed_precision("fp32", torch.device("cpu"))
    ctx = StepContext(torch.Generator().manual_seed(1))
    weight = len(y) * (2 if offset is not None else 1) / PENALTY_BATCH
    with batch_shard(offset, PENALTY_BATCH) if offset is not None else nullcontext():
        return train_step(model, opt, method, x, y, ctx, 1.0, autocast, scaler, weight)


def _penalty_rank(rank, init_file, out):
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=2)
    model, method, x, y = _penalty_setup()
    ddp = torch.nn.parallel.DistributedDataParallel(model)
    rows = slice(4 * rank, 4 * rank + 4)
    _penalty_step(ddp, method, x[rows], y[rows], offset=4 * rank)
    if rank == 0:
        torch.save(model.state_dict(), out)
    dist.barrier()
    dist.destroy_process_group()


def test_gradalign_penalty_over_two_ranks_is_the_single_process_one_when_dead_examples_sit_on_one_rank(tmp_path):
    import torch.multiprocessing as mp

    from fastadv.attacks.grad import input_grad

    model, method, x, y = _penalty_setup()
    dead = input_grad(model, x, y)[0].flatten(1).abs().amax(1) == 0
    assert dead.tolist() == [i in DEAD_ROWS for i in range(PENALTY_BATCH)]  # the premise: dead on rank 1 only
    mp.spawn(_penalty_rank, args=(str(tmp_path / "pg"), str(tmp_path / "ddp.pt")), nprocs=2)
    ddp = torch.load(tmp_path / "ddp.pt", weights_only=True)
    one = _penalty_step(model, method, x, y, offset=None)
    for k, v in model.state_dict().items():
        assert torch.allclose(ddp[k], v, rtol=1e-12, atol=1e-14), k
    assert one.reg.item() > 1e-2  # the penalty's part of the step is not lost in round-off
