"""`fastadv gpu-check` (make gpu-check) run for real at a tiny size on the CPU: every check runs its code and the
report says which checks are about CUDA; on a machine without CUDA and without a scale it refuses."""
import json

import pytest
import torch

from fastadv.cli import main
from fastadv.performance.gpu_check import penalty_grad_cosine
from fastadv.training.loop import FINISHED
from tests.helpers import PARAMS


@pytest.mark.skipif(torch.cuda.is_available(), reason="the refusal is for machines without CUDA")
def test_without_cuda_and_without_a_scale_it_says_what_to_run(tmp_path, capsys):
    assert main(["gpu-check", "--params", str(PARAMS), "--out", str(tmp_path / "g")]) == 2
    assert "fastadv gpu-check --scale smoke --out DIR" in capsys.readouterr().err and not (tmp_path / "g").exists()


def test_penalty_gradient_cosine_is_one_in_fp32_and_finite_in_bf16(tiny_cfg):
    from fastadv.config.run_config import TrainConfig
    from fastadv.training.step import make_model

    torch.manual_seed(0)
    model = make_model(TrainConfig.from_dict(tiny_cfg), torch.device("cpu"))
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    same, _ = penalty_grad_cosine(model, x, y, 8 / 255, torch.float32)
    assert same == pytest.approx(1.0, abs=1e-9)  # the same dtype: the same gradient
    low, note = penalty_grad_cosine(model, x, y, 8 / 255, torch.bfloat16)
    assert isinstance(low, float) and 0.5 < low <= 1.0 + 1e-9 and note == "loss scale 1"


@pytest.mark.slow
def test_gpu_check_runs_every_check_at_a_tiny_size(tmp_path, synthetic_sets, capsys):
    sets = synthetic_sets + ["data.subset=64", "optim.batch_size=32", "model.width=4", "monitor.test_points=16",
                             "monitor.train_points=16", "monitor.pgd_steps=1", "runtime.threads=1"]
    code = main(["gpu-check", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "g"),
                 "--iterations", "2", "--repeats", "1", "--eval-points", "16", *[a for s in sets for a in ("--set", s)]])
    report = json.loads((tmp_path / "g/report.json").read_text())
    checks = {c["check"]: c for c in report["checks"]}
    assert set(checks) == {"precision", "speed", "one_epoch"} and not report["cuda"]
    assert checks["one_epoch"]["status"] == "PASS", checks["one_epoch"]
    assert {r["status"] for r in checks["one_epoch"]["rows"].values()} <= set(FINISHED)
    assert set(checks["precision"]["rows"]) == {"fp16", "bf16"} and checks["precision"]["about_cuda"]
    assert checks["speed"]["gradalign_over_fgsm"] > 0 and checks["speed"]["eval"]["n_points"] == 16  # the option's
    md = (tmp_path / "g/report.md").read_text()
    assert "No CUDA device: this ran on the CPU" in md and "| one_epoch | PASS | no |" in md
    out = capsys.readouterr().out
    assert "precision" in out and "(CPU: says nothing about CUDA)" in out
    assert code == (0 if checks["precision"]["status"] == "PASS" else 1)
