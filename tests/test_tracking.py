"""Experiment tracking with DVCLive (runtime.dvclive): what a run logs is what DVC shows, and a resumed run's log
equals its history."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from fastadv.config.params import deep_merge
from fastadv.training.loop import Preempted, train
from tests.helpers import PARAMS

BIN = Path(sys.executable).parent


def _sh(cwd, *args):
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", "GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@t",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@t", "PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}"}
    r = subprocess.run(list(args), cwd=cwd, env=env, capture_output=True, text=True)
    assert r.returncode == 0, f"{args}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}"
    return r.stdout


# A project's own dvc.yaml, committed: a tracked run must leave it as it is.
PROJECT_DVC_YAML = "metrics:\n- results/evals\nplots:\n- results/fig1.png\n"


@pytest.fixture
def dvc_repo(tmp_path):
    pytest.importorskip("dvclive")
    _sh(tmp_path, "git", "init", "-q")
    _sh(tmp_path, str(BIN / "dvc"), "init", "-q")
    (tmp_path / "dvc.yaml").write_text(PROJECT_DVC_YAML)
    _sh(tmp_path, "git", "add", "dvc.yaml")
    _sh(tmp_path, "git", "commit", "-qm", "init")
    return tmp_path


def _only_the_run_folder_changed(repo: Path, run: str) -> None:
    """Nothing tracked changed, staged or deleted; the one new untracked path is the run's folder."""
    assert (repo / "dvc.yaml").read_text() == PROJECT_DVC_YAML
    assert _sh(repo, "git", "status", "--porcelain", "--untracked-files=normal").splitlines() == [f"?? {run}/"]


def test_a_tracked_run_is_read_back_by_dvc(dvc_repo, synthetic_sets):
    sets = synthetic_sets + ["data.subset=64", "optim.batch_size=32", "optim.epochs=2", "model.width=4",
                             "monitor.test_points=16", "monitor.train_points=16", "monitor.pgd_steps=1",
                             "runtime.threads=1", "runtime.progress=never", "runtime.dvclive=true"]
    _sh(dvc_repo, str(BIN / "fastadv"), "train", "--params", str(PARAMS), "--scale", "smoke", "--out", "runs/r",
        *[a for s in sets for a in ("--set", s)])
    summary = json.loads((dvc_repo / "runs/r/summary.json").read_text())
    metrics = json.loads(_sh(dvc_repo, str(BIN / "dvc"), "metrics", "show", "--json"))
    (shown,) = [m["data"] for rev in metrics.values() for path, m in rev["data"].items() if "dvclive" in path]
    assert shown["final/test_pgd_acc"] == summary["final"]["test_pgd_acc"]
    exp = json.loads(_sh(dvc_repo, str(BIN / "dvc"), "exp", "show", "--json"))
    params = exp[0]["data"]["params"]["runs/r/dvclive/params.yaml"]["data"]
    assert params["method.name"] == "fgsm" and params["runtime.dvclive"] is True
    history = pd.read_csv(dvc_repo / "runs/r/history.csv")
    logged = pd.read_csv(dvc_repo / "runs/r/dvclive/plots/metrics/history/test_pgd_acc.tsv", sep="\t")
    assert logged["step"].tolist() == history["iteration"].tolist()
    assert logged["test_pgd_acc"].tolist() == pytest.approx(history["test_pgd_acc"].tolist())
    assert "dvclive" in _sh(dvc_repo, str(BIN / "dvc"), "plots", "show", "--json")
    _only_the_run_folder_changed(dvc_repo, "runs")


def test_a_resumed_run_logs_its_history_once(dvc_repo, tiny_cfg, monkeypatch):
    """Started in-process from the project's root, as a notebook would (this test once rewrote the repository's
    own dvc.yaml with paths into its tmp folder, issue 38): the run writes inside its folder only."""
    monkeypatch.chdir(dvc_repo)
    cfg = deep_merge(tiny_cfg, {"optim": {"epochs": 3}, "runtime": {"dvclive": True, "checkpoint_every": 1}})
    out = dvc_repo / "run"
    with pytest.raises(Preempted):
        train(cfg, out, max_iterations=2)
    train(cfg, out)
    history = pd.read_csv(out / "history.csv")
    logged = pd.read_csv(out / "dvclive/plots/metrics/history/test_pgd_acc.tsv", sep="\t")
    assert logged["step"].tolist() == history["iteration"].tolist()
    assert logged["test_pgd_acc"].tolist() == pytest.approx(history["test_pgd_acc"].tolist())
    _only_the_run_folder_changed(dvc_repo, "run")
