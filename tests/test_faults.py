"""Fault tolerance: SIGKILL at random moments and SIGTERM pre-emption lose nothing and change nothing.

Every training is a process of its own, forked from a server that holds torch's and fastadv's imports
(tests/forkserver.py): a start costs milliseconds instead of ~3 s of imports, so each random moment falls in the
training itself (loading, steps, evaluations, checkpoint writes), where a kill can lose something."""
import random
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from tests.forkserver import ForkServer
from tests.helpers import PARAMS

EXIT_PREEMPTED = 75


def train_cmd(out: Path, synthetic_root: Path) -> list[str]:
    sets = [f"data.root={synthetic_root}", "data.dataset=svhn", "data.subset=256", "optim.batch_size=32", "optim.epochs=3",
            # lr 0.02: at the scale's lr the separable synthetic task's loss blows up (the run ends 'diverged', exit 3)
            "optim.lr_max=0.02",
            "model.width=4", "method.name=fgsm_rs", "monitor.test_points=32", "monitor.train_points=32",
            "monitor.pgd_steps=2", "runtime.threads=1", "runtime.checkpoint_every=1", "runtime.progress=never"]
    cmd = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(out)]
    for s in sets:
        cmd += ["--set", s]
    return cmd


def same_history(a: Path, b: Path) -> bool:
    """Equal per-epoch records, apart from the measured seconds."""
    ha, hb = pd.read_csv(a / "history.csv"), pd.read_csv(b / "history.csv")
    return ha.drop(columns="train_seconds").equals(hb.drop(columns="train_seconds"))


def weights(out: Path) -> dict:
    return torch.load(out / "model_final.pt", weights_only=True)["state_dict"]


@pytest.fixture(scope="module")
def server():
    s = ForkServer()
    yield s
    s.close()


@pytest.fixture(scope="module")
def reference(tmp_path_factory, synthetic_root, server):
    out = tmp_path_factory.mktemp("ref")
    t = time.perf_counter()
    assert server.run(train_cmd(out, synthetic_root), out.parent / "ref.err") == 0, (out.parent / "ref.err").read_text()
    out.joinpath("wall_seconds").write_text(str(time.perf_counter() - t))
    return out


def run_until(server, cmd, seconds):
    """Start ``cmd``; SIGKILL it after ``seconds`` (no chance to clean up, maybe mid-checkpoint-write).
    Returns True if it was killed, False if it finished first (then it must have succeeded)."""
    err = Path(cmd[cmd.index("--out") + 1] + ".err")
    server.start(cmd, err)
    code = server.wait(seconds)
    if code is None:
        server.signal(signal.SIGKILL)
        code = server.wait()
        if code == -signal.SIGKILL:
            return True  # else it ended just before the signal
    assert code == 0, err.read_text()[-2000:]
    return False


@pytest.mark.slow
def test_sigkill_at_random_moments_then_rerun_gives_identical_weights(tmp_path, reference, synthetic_root, server):
    rng = random.Random(0)
    ref = weights(reference)
    wall = float((reference / "wall_seconds").read_text())  # the training's own time: no imports in a fork
    for trial in range(5):
        out = tmp_path / f"t{trial}"
        cmd = train_cmd(out, synthetic_root)
        frac = rng.uniform(0.3, 0.9)
        # The machine's load varies: if the run finished before the kill, start the trial
        # afresh with an earlier kill, so every trial really is interrupted.
        while not run_until(server, cmd, frac * wall):
            shutil.rmtree(out)
            frac /= 2
        kills = 1
        if rng.random() < 0.5 and run_until(server, cmd, rng.uniform(0.2, 0.6) * wall):  # sometimes twice
            kills += 1
        assert not run_until(server, cmd, None), "the final rerun must finish"
        got = weights(out)
        assert all(torch.equal(ref[k], got[k]) for k in ref), f"trial {trial}: weights differ after {kills} kills"
        assert same_history(out, reference), f"trial {trial}: history differs"


@pytest.mark.slow
def test_sigterm_saves_state_and_exits_75_then_resumes(tmp_path, reference, synthetic_root, server):
    out = tmp_path / "term"
    server.start(train_cmd(out, synthetic_root), tmp_path / "term.err")
    deadline = time.time() + 60
    while not (out / "state.pt").exists() and time.time() < deadline:
        time.sleep(0.05)
    server.signal(signal.SIGTERM)
    code = server.wait(60)
    if code == 0:
        pytest.skip("run finished before SIGTERM arrived")
    assert code == EXIT_PREEMPTED, (tmp_path / "term.err").read_text()[-2000:]
    assert (out / "state.pt").exists() and not (out / "summary.json").exists()
    assert server.run(train_cmd(out, synthetic_root), tmp_path / "rerun.err") == 0
    ref, got = weights(reference), weights(out)
    assert all(torch.equal(ref[k], got[k]) for k in ref)
