"""runtime.channels_last never takes oneDNN's crashing path (issue 30): narrow PreActResNets train in the
default layout, the run says so, and every layout that is taken trains under oneDNN's AVX2 kernels.

The crash itself (a channels-last 1x1 convolution with stride > 1 and fewer than 8 input channels: its
weight gradient segfaults, aborts or hangs on AVX2 CPUs with torch 2.14.1) is mapped by
benchmarks/channels_last_probe.py; docs/performance.md holds its table."""
import json

import pytest
import torch

from fastadv.performance.benchmark import bench_train
from fastadv.config.params import deep_merge
from fastadv.models import build_model
from fastadv.training.runtime import channels_last_hazard, memory_layout
from fastadv.training.loop import FINISHED, train
from tests.helpers import AVX2


@pytest.mark.parametrize("width", range(1, 11))
def test_preact_resnets_narrower_than_8_are_refused_channels_last(width):
    m = build_model("preact_resnet18", width=width, num_classes=10, in_shape=(3, 32, 32))
    reason = channels_last_hazard(m)
    # PreActResNet-18's strided shortcuts are 1x1 convolutions from width and 2·width channels
    assert (reason is not None) == (width < 8)
    if reason:
        assert f"stride 2 and {width} input channels (< 8)" in reason and "shortcut" in reason


@pytest.mark.parametrize("conv, refused", [
    (torch.nn.Conv2d(7, 14, 1, stride=2), True),
    (torch.nn.Conv2d(2, 4, 1, stride=4), True),
    (torch.nn.Conv2d(8, 16, 1, stride=2), False),
    (torch.nn.Conv2d(4, 8, 1, stride=1), False),  # not strided
    (torch.nn.Conv2d(4, 8, 3, stride=2), False),  # not 1x1
])
def test_the_rule_is_about_strided_1x1_convolutions_with_fewer_than_8_inputs(conv, refused):
    layout = memory_layout(torch.nn.Sequential(conv), channels_last=True)
    assert layout["channels_last"] is not refused and (layout["reason"] is not None) == refused
    assert memory_layout(torch.nn.Sequential(conv), channels_last=False) == {
        "channels_last_requested": False, "channels_last": False, "reason": None}


def test_the_paper_scale_models_keep_channels_last():
    for name, width in (("preact_resnet18", 64), ("one_layer_cnn", 4), ("resnet50", 64)):
        shape = (3, 224, 224) if name == "resnet50" else (3, 32, 32)
        assert channels_last_hazard(build_model(name, width=width, num_classes=10, in_shape=shape)) is None


@pytest.mark.isolated(env=AVX2)
@pytest.mark.parametrize("width", [4, 8])
def test_channels_last_run_trains_under_avx2_and_records_its_layout(tiny_cfg, tmp_path, width, capfd):
    """The issue's reproduction through the training path: three steps of a width-4 PreActResNet-18 with
    channels_last requested (batch 64), oneDNN on its AVX2 kernels. Width 4 falls back to the default
    layout, says so once and records it; width 8 trains channels-last."""
    cfg = deep_merge(tiny_cfg, {"model": {"width": width}, "optim": {"epochs": 3},
                                "runtime": {"channels_last": True}})
    summary = train(cfg, tmp_path)
    assert summary["status"] in FINISHED and summary["iterations_done"] == 3
    layout = json.loads((tmp_path / "summary.json").read_text())["memory_layout"]
    assert layout["channels_last_requested"] is True and layout["channels_last"] is (width == 8)
    err = capfd.readouterr().err
    if width == 4:
        assert layout["reason"].startswith("layer 'layers.2.shortcut' is a 1x1 convolution with stride 2")
        assert err.count("runtime.channels_last ignored, training in the default layout") == 1
    else:
        assert layout["reason"] is None and "channels_last ignored" not in err


def test_bench_train_times_the_layout_training_would_use(tiny_cfg):
    cl = {"runtime": {"channels_last": True}}
    narrow = bench_train(deep_merge(tiny_cfg, cl), ["fgsm"], iterations=1, warmup=0, repeats=1)
    wide = bench_train(deep_merge(tiny_cfg, {**cl, "model": {"width": 8}}), ["fgsm"], iterations=1, warmup=0, repeats=1)
    assert narrow[0]["channels_last"] is False and wide[0]["channels_last"] is True
