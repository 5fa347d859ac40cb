"""Benchmark commands run and report consistent numbers (no timing assertions: those are for humans)."""
import pandas as pd

from fastadv.evaluation.benchmark import bench_eval, bench_train
from fastadv.training.checkpoint import save_model
from fastadv.models import build_model


def test_bench_train_reports_ratio_to_fgsm(tiny_cfg, tmp_path, capsys):
    rows = bench_train(tiny_cfg, ["fgsm", "gradalign"], iterations=2, warmup=1, repeats=3,
                       csv_out=str(tmp_path / "b.csv"))
    assert [r["method"] for r in rows] == ["fgsm", "gradalign"] and rows[0]["ratio_to_fgsm"] == 1.0
    # Spreads are consistent (whatever the times are on a loaded machine): min ≤ median ≤ max.
    for r in rows:
        assert r["seconds_min"] <= r["seconds_per_iteration"] <= r["seconds_max"] and r["repeats"] == 3
        assert r["ratio_min"] <= r["ratio_to_fgsm"] <= r["ratio_max"]
    assert len(pd.read_csv(tmp_path / "b.csv")) == 2 and "x FGSM [" in capsys.readouterr().out


def test_bench_eval_same_accuracy_with_and_without_skipping(tiny_cfg, tmp_path):
    m = build_model("preact_resnet18", width=4, num_classes=10, in_shape=(3, 32, 32))
    save_model(tmp_path / "m.pt", m, tiny_cfg, "final", 0)
    row = bench_eval(tmp_path / "m.pt", n_points=16, batch_size=16, threads=1, repeats=2)
    assert row["acc_skip"] == row["acc_noskip"] and row["n_points"] == 16
    assert row["speedup_min"] <= row["speedup_median"] <= row["speedup_max"]
