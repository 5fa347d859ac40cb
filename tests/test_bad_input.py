"""The bad-input matrix: each mistake is one line naming the value and the valid choices,
exit code 2, and nothing that was already computed is touched."""
import errno
import os

import pandas as pd
import pytest
import torch

from fastadv import atomic
from fastadv.cli import main
from fastadv.paper.figures import require_runs
from fastadv.errors import FastAdvError
from fastadv.training.loop import train
from tests.helpers import PARAMS


def snapshot(folder):
    return {p: p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory, synthetic_root):
    out = tmp_path_factory.mktemp("run")
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(out), "--set", f"data.root={synthetic_root}",
            "--set", "data.dataset=svhn",
            "--set", "data.subset=64", "--set", "optim.epochs=1", "--set", "model.width=4",
            "--set", "monitor.test_points=16", "--set", "monitor.train_points=16", "--set", "runtime.threads=1"]
    assert main(args) == 0
    return out, args


TRAIN_ROWS = [
    (["--set", "data.dataset=cifar100"], "invalid train.data.dataset 'cifar100'; valid: cifar10, svhn, mnist, imagenet"),
    (["--set", "method.name=fgsmm"], "invalid train.method.name 'fgsmm'; valid: cure, elle, elle_a, fgsm, fgsm_rs"),
    (["--set", "model.name=vit"], "invalid train.model.name 'vit'; valid: preact_resnet18"),
    (["--scale", "huge"], "unknown scale 'huge'; valid: paper, quick, smoke"),
    (["--variant", "pgd3"], "unknown method variant 'pgd3'; valid: cure, cure_fgsm, elle, elle_a, elle_original, fgsm, fgsm_carried, fgsm_rs"),
    (["--experiment", "fig9"], "unknown experiment 'fig9'; valid: autoattack, cnn4, fig1, fig1_svhn, fig4, figA"),
    (["--set", "method.eps=0"], "train.method.eps=0.0 out of range"),
    (["--set", "method.eps=300"], "train.method.eps=300.0 out of range"),
    (["--set", "optim.epochs=-2"], "train.optim.epochs=-2 out of range"),
    (["--set", "optim.lr_mx=0.1"], "unknown config key 'train.optim.lr_mx'"),
    (["--set", "optim.batch_size=big"], "train.optim.batch_size must be int, got 'big'"),
    (["--set", "runtime.sync_batchnorm=true", "--set", "method.name=gradalign"],
     "train.runtime.sync_batchnorm: true cannot train train.method.name 'gradalign' (it differentiates an input "
     "gradient, and SyncBatchNorm's backward is not differentiable); set runtime.sync_batchnorm: false, or a method "
     "of elle, elle_a, fgsm, fgsm_rs, free, gradalign_fd, nfgsm, pgd, standard"),
    (["--set", "runtime.sync_batchnorm=true", "--set", "method.name=cure"], "cannot train train.method.name 'cure'"),
    (["--set", "runtime.sync_batchnorm=true", "--set", "method.name=llr"], "cannot train train.method.name 'llr'"),
    (["--set", "method.eps=4"], "holds a finished run with a different config (method.eps: 8.0 != 4.0)"),
]


def test_missing_prepared_data(finished_run, tmp_path, capsys):
    _, args = finished_run
    args = [a if not a.startswith("data.root=") else "data.root=/nonexistent" for a in args]
    args[args.index("--out") + 1] = str(tmp_path / "new")
    assert main(args) == 2
    assert "prepared data '/nonexistent/svhn.npz' not found; run: fastadv prepare --dataset svhn" in capsys.readouterr().err
    assert not (tmp_path / "new" / "model_final.pt").exists()


@pytest.mark.parametrize("extra, message", TRAIN_ROWS)
def test_train_bad_input(finished_run, extra, message, capsys):
    out, args = finished_run
    before = snapshot(out)
    assert main(args + extra) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and err.count("\n") == 0 and err.startswith("fastadv: error:")
    assert snapshot(out) == before


def test_missing_and_corrupt_data_sources(tmp_path, source, capsys):
    root = tmp_path / "data"
    assert main(["prepare", "--dataset", "mnist", "--source", str(source), "--root", str(root)]) == 0
    before = snapshot(root)
    assert main(["prepare", "--dataset", "mnist", "--source", str(tmp_path / "none.npz"), "--root", str(root)]) == 2
    assert "data source" in capsys.readouterr().err and snapshot(root) == before
    raw = (source / "mnist.npz").read_bytes()
    (tmp_path / "trunc.npz").write_bytes(raw[:1000])
    assert main(["prepare", "--dataset", "mnist", "--source", str(tmp_path / "trunc.npz"), "--root", str(root)]) == 2
    assert "corrupt or truncated" in capsys.readouterr().err and snapshot(root) == before


def test_foreign_or_corrupt_checkpoint_in_run_dir_is_refused(tmp_path, tiny_cfg, capsys):
    out = tmp_path / "run"
    out.mkdir()
    (out / "state.pt").write_bytes(b"garbage that is not a checkpoint")
    with pytest.raises(FastAdvError, match="corrupt, truncated"):
        train(tiny_cfg, out)
    other = dict(tiny_cfg, method=dict(tiny_cfg["method"], eps=2.0))
    torch.save({"format": "fastadv-train-state-v1", "config": other}, out / "state.pt")
    with pytest.raises(FastAdvError, match=r"different config \(method.eps: 2.0 != 8.0\)"):
        train(tiny_cfg, out)
    assert (out / "state.pt").stat().st_size > 0 and not (out / "model_final.pt").exists()


def test_evaluate_with_corrupt_model(tmp_path, capsys):
    (tmp_path / "m.pt").write_bytes(b"\x00" * 100)
    assert main(["evaluate", "--params", str(PARAMS), "--model", str(tmp_path / "m.pt"), "--out", str(tmp_path / "r.json")]) == 2
    assert "corrupt, truncated" in capsys.readouterr().err and not (tmp_path / "r.json").exists()


def test_figure_names_missing_runs():
    df = pd.DataFrame({"method_label": ["fgsm"], "eps": [8.0], "train_seed": [0], "model_kind": ["final"]})
    with pytest.raises(FastAdvError, match=r"lacks 3 run\(s\) the figure needs: fgsm eps=16 seed=0 final, "
                                           r"gradalign eps=8 seed=0 final"):
        require_runs(df, ["fgsm", "gradalign"], [8, 16], [0], ["final"])


def test_disk_full_while_writing_keeps_the_previous_file(tmp_path, monkeypatch):
    target = tmp_path / "history.csv"
    atomic.write_text(target, "old complete content\n")

    def full(*a, **k):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space left"):
        atomic.write_text(target, "new content that never fully lands\n")
    assert target.read_text() == "old complete content\n"
    assert [p.name for p in tmp_path.iterdir()] == ["history.csv"]  # no temp file left behind
