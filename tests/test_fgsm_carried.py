"""FGSM with a carried start (``method.fgsm.start: carried``): the "FGSM" of Wong et al.'s ImageNet code
(locuslab/fast_adversarial ImageNet/main_fast.py with ``random_init: false``: one noise buffer,
``global_noise_data``, carried from batch to batch), against that recurrence written out here step by step;
its buffer survives an interruption."""
import pytest
import torch
import torch.nn.functional as F

from fastadv.config.params import deep_merge
from fastadv.methods import StepContext, build_method
from fastadv.methods.registry import method_label
from fastadv.training.loop import train
from fastadv.training.step import mixed_precision, train_step

EPS, STEP = 4 / 255, 5 / 255  # their 4px configs: clip_eps 4, fgsm_step 5 (/255): α = 1.25 ε


def _model():
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 5))


def _batches():
    g = torch.Generator().manual_seed(1)
    # 4 batches of 6, the last of 4 (their buffer's first rows serve a short batch); pixels at 0 and 1 included
    xs = [torch.rand(6, 3, 4, 4, generator=g).round(decimals=1) for _ in range(3)] + [torch.rand(4, 3, 4, 4, generator=g)]
    return [(x, torch.randint(0, 5, (len(x),), generator=g)) for x in xs]


def _wong(model, batches, lr):
    """main_fast.py's train() for one epoch, fp32, n_repeats 1, random_init false, as their code does it."""
    opt = torch.optim.SGD(model.parameters(), lr=lr)
    noise = torch.zeros(6, 3, 4, 4)  # global_noise_data: batch_size rows
    for x, y in batches:
        noise_batch = noise[0:x.size(0)].clone().requires_grad_(True)
        in1 = (x + noise_batch).clamp(0, 1.0)
        F.cross_entropy(model(in1), y).backward()
        noise[0:x.size(0)] += STEP * torch.sign(noise_batch.grad)
        noise.clamp_(-EPS, EPS)
        in1 = (x + noise[0:x.size(0)]).clamp(0, 1.0)
        loss = F.cross_entropy(model(in1), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, noise


def test_carried_start_is_wongs_global_noise_recurrence():
    ref, ref_noise = _wong(_model(), _batches(), lr=0.5)
    model = _model()
    method = build_method({"name": "fgsm", "eps": 4, "fgsm": {"alpha": 1.25, "start": "carried"}}, "cifar10")
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    autocast, scaler = mixed_precision("fp32", torch.device("cpu"))
    for i, (x, y) in enumerate(_batches()):
        train_step(model, opt, method, x, y, StepContext(torch.Generator().manual_seed(i)), 0.5, autocast, scaler)
    for a, b in zip(model.parameters(), ref.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    torch.testing.assert_close(method.state_dict()["noise"], ref_noise, rtol=0, atol=1e-7)
    assert method.state_dict()["noise"].abs().max() > 0  # it did carry something
    # zero start is another recurrence: the same batches give other weights
    zero = _model()
    z = build_method({"name": "fgsm", "eps": 4, "fgsm": {"alpha": 1.25, "start": "zero"}}, "cifar10")
    opt = torch.optim.SGD(zero.parameters(), lr=0.5)
    for i, (x, y) in enumerate(_batches()):
        train_step(zero, opt, z, x, y, StepContext(torch.Generator().manual_seed(i)), 0.5, autocast, scaler)
    assert not torch.allclose(zero[1].weight, ref[1].weight, atol=1e-4)


def test_the_carried_variant_has_its_own_label():
    assert method_label({"name": "fgsm", "eps": 4, "fgsm": {"alpha": 1.25, "start": "carried"}}) == "fgsm_carried"
    assert method_label({"name": "fgsm", "eps": 4, "fgsm": {"alpha": 1.25, "start": "zero"}}) == "fgsm"


def test_an_interrupted_carried_run_resumes_bit_exact(tmp_path, tiny_cfg):
    from fastadv.training.loop import Preempted

    cfg = deep_merge(tiny_cfg, {"data": {"subset": 96}, "optim": {"batch_size": 32, "epochs": 2},
                                "method": {"name": "fgsm", "fgsm": {"start": "carried"}},
                                "runtime": {"checkpoint_every": 2}})
    train(cfg, tmp_path / "whole")
    with pytest.raises(Preempted):
        train(cfg, tmp_path / "cut", max_iterations=4)  # mid-epoch 2: the buffer is in state.pt
    state = torch.load(tmp_path / "cut/state.pt", weights_only=True)
    assert state["method"][0]["noise"].abs().max() > 0
    train(cfg, tmp_path / "cut")
    a = torch.load(tmp_path / "cut/model_final.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "whole/model_final.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(a[k], b[k]) for k in b)
