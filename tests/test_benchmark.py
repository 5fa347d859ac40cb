"""Benchmark commands run and report consistent numbers (no timing assertions: those are for humans)."""
import pandas as pd

from fastadv.performance.benchmark import bench_eval, bench_train
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


def test_bench_train_runs_each_method_as_its_scale_trains_it(synthetic_root, tmp_path, capsys):
    """The quick scale trains GradAlign channels-last with the fused double backward (its variant's runtime) and
    FGSM channels-last with the native one: bench-train times exactly that, and says so; --layout default times
    both in the default layout, native."""
    from fastadv.cli import main

    sets = [f"data.root={synthetic_root}", "data.dataset=svhn", "data.subset=32", "optim.batch_size=16",
            "runtime.threads=1", "runtime.device=cpu"]
    for layout in ("trained", "default"):
        csv = tmp_path / f"{layout}.csv"
        argv = ["bench-train", "--scale", "quick", "--methods", "fgsm", "gradalign", "--iterations", "1",
                "--repeats", "1", "--layout", layout, "--csv", str(csv)] + [a for s in sets for a in ("--set", s)]
        assert main(argv) == 0
        rows = pd.read_csv(csv).set_index("method")
        out = capsys.readouterr().out
        if layout == "trained":
            assert rows.loc["gradalign", "double_backward"] == "fused" and rows.loc["fgsm", "double_backward"] == "native"
            assert rows["channels_last"].all() and "as its config trains it" in out
            assert "channels-last, fused double backward" in out
        else:
            assert (rows["double_backward"] == "native").all() and not rows["channels_last"].any()
            assert "in the default layout" in out and "default layout, native double backward" in out
        assert list(rows["method_name"]) == ["fgsm", "gradalign"] and rows["batch_size"].eq(16).all()
