"""Training loop: every method runs end to end, resume is bit-exact, outputs are complete."""
import json

import pandas as pd
import pytest
import torch
import yaml

from fastadv.cli import main
from fastadv.config.params import deep_merge
from fastadv.errors import FastAdvError
from fastadv.training.loop import FINISHED, Preempted, train
from tests.helpers import AVX2, PARAMS

METHOD_SETS = {
    "standard": [], "fgsm": [], "fgsm_rs": [], "gradalign": [], "gradalign_fd": [], "nfgsm": [], "elle": [],
    "elle_a": ["method.elle_a.lambda=100"], "cure": [], "llr": ["method.llr.steps=2"],
    "pgd": ["method.pgd.steps=2", "method.pgd.alpha=0.5"], "free": ["method.free.replay=2"],
}


@pytest.mark.parametrize("method", sorted(METHOD_SETS))
def test_one_batch_cli_train_for_every_method(tmp_path, synthetic_sets, method, capsys):
    sets = ["data.subset=32", "optim.batch_size=32", "optim.epochs=1", "model.width=4", "monitor.test_points=16",
            "monitor.train_points=16", "monitor.pgd_steps=1", "runtime.threads=1", "runtime.progress=never",
            f"method.name={method}", "method.eps=8"] + synthetic_sets + METHOD_SETS[method]
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path)]
    for s in sets:
        args += ["--set", s]
    assert main(args) == 0
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["epoch"]) == [0, 1]
    for col in ("train_loss", "train_acc", "test_clean_acc", "test_fgsm_acc", "test_pgd_acc",
                "grad_alignment", "train_pgd_acc", "lr", "train_seconds", "co"):
        assert col in hist
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["status"] in FINISHED and summary["config"]["method"]["name"] == method
    assert summary["hardware"]["torch"] == torch.__version__
    for f in ("model_final.pt", "model_best.pt", "config.yaml", "state.pt"):
        assert (tmp_path / f).is_file()
    assert hist.loc[1, "train_loss"] > 0


def run_cfg(tiny_cfg, **over):
    return deep_merge(tiny_cfg, {"data": {"subset": 96}, "optim": {"batch_size": 32, "epochs": 2}, **over})


def final_weights(out):
    return torch.load(out / "model_final.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("method,double_backward", [("fgsm_rs", "native"), ("free", "native"), ("gradalign", "native"),
                                                    ("gradalign", "fused"), ("elle_a", "native")])
def test_resume_after_interruption_is_bit_exact(tmp_path, tiny_cfg, method, double_backward):
    over = {"method": {"name": method, "free": {"replay": 2, "alpha": 1.0}},
            "runtime": {"checkpoint_every": 2, "double_backward": double_backward}}
    cfg = run_cfg(tiny_cfg, **over)
    ref = train(cfg, tmp_path / "ref")
    out = tmp_path / "cut"
    with pytest.raises(Preempted):  # epoch 1, mid-epoch, after a mid-epoch checkpoint and one more step
        train(cfg, out, max_iterations=3)
    with pytest.raises(Preempted):  # across the epoch boundary
        train(cfg, out, max_iterations=2)
    resumed = train(cfg, out)
    a, b = final_weights(tmp_path / "ref"), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a)
    ha, hb = pd.read_csv(tmp_path / "ref" / "history.csv"), pd.read_csv(out / "history.csv")
    cols = [c for c in ha if c != "train_seconds"]
    pd.testing.assert_frame_equal(ha[cols], hb[cols])
    assert resumed["final"] == ref["final"]


def test_interrupted_run_with_another_config_restarts_only_when_asked(tmp_path, tiny_cfg, capsys):
    old, new = run_cfg(tiny_cfg, method={"name": "fgsm", "eps": 4.0}), run_cfg(tiny_cfg, method={"name": "fgsm"})
    out = tmp_path / "run"
    with pytest.raises(Preempted):
        train(old, out, max_iterations=2)
    with pytest.raises(FastAdvError, match="different config.*--restart-if-changed"):
        train(new, out)
    restarted = train(new, out, restart_if_changed=True)
    ref = train(new, tmp_path / "ref")
    a, b = final_weights(tmp_path / "ref"), final_weights(out)
    assert all(torch.equal(a[k], b[k]) for k in a) and restarted["final"] == ref["final"]
    assert yaml.safe_load((out / "config.yaml").read_text())["method"]["eps"] == 8.0
    assert "discarding" in capsys.readouterr().err
    with pytest.raises(Preempted):  # the same config still resumes rather than restarting
        train(old, tmp_path / "same", max_iterations=2)
    train(old, tmp_path / "same", restart_if_changed=True)
    err = capsys.readouterr().err
    assert "resuming" in err and "discarding" not in err


def test_same_seed_same_run_and_other_seed_differs(tmp_path, tiny_cfg):
    cfg = run_cfg(tiny_cfg, optim={"epochs": 1, "batch_size": 32})
    train(cfg, tmp_path / "a")
    train(cfg, tmp_path / "b")
    train(deep_merge(cfg, {"runtime": {"seed": 1}}), tmp_path / "c")
    a, b, c = (final_weights(tmp_path / n) for n in "abc")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not all(torch.equal(a[k], c[k]) for k in a)


def test_finished_run_is_not_redone_and_other_config_is_refused(tmp_path, tiny_cfg, synthetic_sets):
    cfg = run_cfg(tiny_cfg, optim={"epochs": 1, "batch_size": 32})
    train(cfg, tmp_path)
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    train(cfg, tmp_path)  # nothing to do
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path),
            "--set", synthetic_sets[0], "--set", synthetic_sets[1], "--set", "method.eps=4"]
    assert main(args) == 2
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_divergence_is_recorded_not_continued(tmp_path, tiny_cfg):
    cfg = run_cfg(tiny_cfg, method={"name": "standard"}, optim={"lr_max": 1e30, "lr_schedule": "constant",
                                                                "epochs": 3, "batch_size": 32})
    s = train(cfg, tmp_path)
    assert s["status"] == "diverged" and "non-finite" in s["reason"]
    hist = pd.read_csv(tmp_path / "history.csv")
    assert list(hist["epoch"]) == [0]  # epochs before the divergence are kept
    final = torch.load(tmp_path / "model_final.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())  # last finite model


def test_diverged_run_exits_3_unless_the_workflow_accepts_it(tmp_path, synthetic_sets):
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--set", synthetic_sets[0], "--set", synthetic_sets[1],
            "--set", "method.name=standard", "--set", "optim.lr_max=1e30", "--set", "optim.lr_schedule=constant",
            "--set", "data.subset=64", "--set", "model.width=4", "--set", "optim.epochs=2", "--set", "optim.batch_size=32",
            "--set", "runtime.threads=1"]
    assert main(args + ["--out", str(tmp_path / "a")]) == 3
    assert main(args + ["--diverged-ok", "--out", str(tmp_path / "b")]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["status"] == "diverged"


@pytest.mark.parametrize("best_by,column", [("pgd", "train_pgd_acc"), ("clean", "test_clean_acc")])
def test_early_stopped_model_is_the_epoch_best_by_the_rule(tmp_path, tiny_cfg, best_by, column):
    """pgd: the GradAlign code's PGD accuracy on the fixed training points; clean: Wong et al.'s best clean
    validation accuracy (their model_best.pth.tar). The first of equal values wins (idxmax)."""
    cfg = run_cfg(tiny_cfg, optim={"epochs": 3, "batch_size": 32}, monitor={"best_by": best_by})
    s = train(cfg, tmp_path)
    hist = pd.read_csv(tmp_path / "history.csv")
    best = int(hist[column].idxmax())
    assert (s["best_by"], s["best_value"]) == (best_by, hist[column].max())
    assert s["best_epoch"] == hist.loc[best, "epoch"]
    assert torch.load(tmp_path / "model_best.pt", weights_only=True)["epoch"] == s["best_epoch"]


@pytest.mark.isolated(env=AVX2)
def test_resume_is_bit_exact_in_the_channels_last_layout(tmp_path, tiny_cfg):
    # width 8: narrower PreActResNets train in the default layout (fastadv.training.runtime)
    cfg = run_cfg(tiny_cfg, method={"name": "fgsm"}, model={"width": 8},
                  runtime={"checkpoint_every": 2, "channels_last": True})
    assert train(cfg, tmp_path / "ref")["memory_layout"]["channels_last"]
    with pytest.raises(Preempted):
        train(cfg, tmp_path / "cut", max_iterations=3)
    train(cfg, tmp_path / "cut")
    a, b = final_weights(tmp_path / "ref"), final_weights(tmp_path / "cut")
    assert all(torch.equal(a[k], b[k]) for k in a)
