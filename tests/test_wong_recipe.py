"""Wong et al.'s ImageNet recipe (ICLR 2020; locuslab/fast_adversarial, ImageNet/): the pieces fastadv has,
checked against values taken from their files, computed independently (numpy) where they are formulas."""
import numpy as np
import pytest
import torch

from fastadv.config.params import deep_merge, validate_section
from fastadv.config.run_config import TrainConfig
from fastadv.config.study import Study, resolve_config
from fastadv.errors import FastAdvError
from fastadv.evaluation.protocol import PROTOCOLS
from fastadv.training.step import make_optimizer
from fastadv.training.schedule import learning_rate
from tests.helpers import PARAMS

# ImageNet/configs/configs_fast_4px_phase{1,2,3}.yml: TRAIN.start_epoch, epochs, lr_epochs, lr_values. Each phase's
# main_fast.py sets lr = np.interp(epoch + (i + 1) / len(train_loader), lr_epochs, lr_values) at iteration i.
WONG_PHASES = [(0, 6, (0, 1, 6), (0, 0.4, 0.04)), (6, 12, (6, 12), (0.04, 0.004)), (12, 15, (12, 15), (0.004, 0.0004))]


def test_interpolated_schedule_is_wong_et_al_per_iteration_lr_in_every_phase():
    study = Study.load(PARAMS)
    o = TrainConfig.from_dict(study.train_config("imagenet", "fgsm_rs", 4.0, 0)).optim
    iters = 37  # any loader length
    total = o.epochs * iters
    for start, end, xs, ys in WONG_PHASES:
        for epoch in range(start, end):
            for i in range(iters):
                want = np.interp([epoch + (i + 1) / iters], xs, ys)[0]
                step = epoch * iters + i + 1  # what training.loop.Run.lr is asked at that iteration
                got = learning_rate(o.lr_schedule, step / total, o.lr_max, o.lr_peak, o.epochs, o.lr_epochs,
                                    o.lr_values)
                assert got == pytest.approx(want, rel=1e-12, abs=1e-15), (epoch, i)
    assert learning_rate("interpolated", 1.5, 0.1, epochs=10, lr_epochs=(0, 2), lr_values=(0, 1)) == 1.0  # beyond


def test_imagenet_experiment_resolves_to_wong_et_al_values():
    cfg = Study.load(PARAMS).train_config("imagenet", "fgsm_rs", 4.0, 0)
    o, m = cfg["optim"], cfg["method"]
    # configs_fast_4px_phase*.yml: SGD momentum 0.9, weight_decay 1e-4, 15 epochs; main_fast.py: no decay on BN
    assert (o["name"], o["momentum"], o["weight_decay"], o["epochs"]) == ("sgd", 0.9, 1e-4, 15)
    assert o["no_decay_on_batchnorm"] and o["lr_schedule"] == "interpolated"
    assert (o["lr_epochs"], o["lr_values"]) == ([0, 1, 6, 12, 15], [0, 0.4, 0.04, 0.004, 0.0004])
    # ADV.fgsm_step 5 for clip_eps 4: the step is 1.25 ε; random_init: true
    assert m["name"] == "fgsm_rs" and m["fgsm_rs"]["alpha"] == 1.25
    assert cfg["model"] == {"name": "resnet50", "width": 64, "normalize": True}
    # configs_fast_4px_evaluate.yml: pgd_attack (50, 1/255) with --restarts 10 (run_eval.sh)
    steps, restarts, alpha = PROTOCOLS["wong_imagenet_pgd50_10"]
    assert (steps, restarts) == (50, 10) and alpha(4 / 255) == pytest.approx(0.00392156862, abs=1e-11)


def test_interpolated_schedule_needs_its_points_named_in_the_error():
    d = resolve_config(PARAMS, "train", "smoke")
    with pytest.raises(FastAdvError, match=r"train\.optim\.lr_schedule interpolated needs train\.optim\.lr_epochs "
                                           r"and train\.optim\.lr_values, two lists of one length; got None and None"):
        validate_section(deep_merge(d, {"optim": {"lr_schedule": "interpolated"}}), "train")
    with pytest.raises(FastAdvError, match=r"train\.optim\.lr_epochs must not decrease; got \[0\.0, 2\.0, 1\.0\]"):
        validate_section(deep_merge(d, {"optim": {"lr_schedule": "interpolated", "lr_epochs": [0, 2, 1],
                                                  "lr_values": [0, 1, 0]}}), "train")


@pytest.mark.parametrize("no_decay", [True, False])
def test_no_weight_decay_on_batch_norm_parameters(no_decay, tiny_cfg):
    """One SGD step on a zero gradient: weight decay alone moves a weight by lr·wd·w, and (Wong et al.) not
    batch norm's weights and biases."""
    cfg = TrainConfig.from_dict(tiny_cfg).replace(optim={"weight_decay": 0.1, "momentum": 0.0, "lr_max": 1.0,
                                                         "no_decay_on_batchnorm": no_decay})
    model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4))
    with torch.no_grad():
        model[1].weight.fill_(2.0)
        model[1].bias.fill_(1.0)
    before = {k: v.clone() for k, v in model.named_parameters()}
    opt = make_optimizer(cfg, model)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    for k, p in model.named_parameters():
        decayed = before[k] * (1 - 0.1)
        want = before[k] if (no_decay and k.startswith("1.")) else decayed
        torch.testing.assert_close(p, want, msg=k)
