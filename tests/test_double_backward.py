"""runtime.double_backward: fused — batch norm's and convolution's double backward by hand-derived formulas
(fastadv.attacks.double_backward), checked against finite differences and against autograd's own."""
import json

import pytest
import torch
import torch.nn.functional as F

from fastadv.attacks.double_backward import double_backward_as, fused_double_backward
from fastadv.attacks.grad import input_grad, loss_and_input_grad
from fastadv.config.params import deep_merge
from fastadv.methods.gradalign import grad_align_penalty
from fastadv.models import build_model
from fastadv.training.loop import train
from fastadv.training.runtime import double_backward_path

LAYOUTS = [torch.contiguous_format, torch.channels_last]


def _input_gradient(layer, x, *params, fused=True):
    """∇ₓ⟨r, tanh(layer(x))⟩ taken with create_graph — the use the fused nodes are built for."""
    x = x if x.requires_grad else x.detach().requires_grad_(True)
    with fused_double_backward() if fused else torch.enable_grad():
        out = layer(x, *params)
    r = torch.linspace(-1, 1, out.numel(), dtype=out.dtype).reshape(out.shape)
    (g,) = torch.autograd.grad((out.tanh() * r).sum(), x, create_graph=True)
    return g


def _batch_norm(fmt):
    return lambda x, w, b: F.batch_norm(x.contiguous(memory_format=fmt), None, None, w, b, True, 0.1, 1e-5)


def _conv(fmt):
    return lambda x, w, b: F.conv2d(x.contiguous(memory_format=fmt), w, b, stride=2, padding=1, groups=2)


def _assert_matches_finite_differences_and_autograd(fn, shapes):
    gen = torch.Generator().manual_seed(0)
    x, w, b = (torch.randn(s, dtype=torch.float64, generator=gen).requires_grad_(True) for s in shapes)
    assert torch.autograd.gradcheck(lambda *a: _input_gradient(fn, *a), (x, w, b))
    v = torch.randn(shapes[0], dtype=torch.float64, generator=gen)
    fused, native = (torch.autograd.grad((_input_gradient(fn, x, w, b, fused=f) * v).sum(), (x, w))
                     for f in (True, False))
    for a, c in zip(fused, native):
        assert torch.allclose(a, c, rtol=1e-10, atol=1e-12) and a.abs().max() > 1e-3


@pytest.mark.parametrize("fmt", LAYOUTS)
@pytest.mark.parametrize("layer,shapes", [(_batch_norm, [(4, 3, 5, 5), (3,), (3,)]),
                                          (_conv, [(3, 4, 7, 7), (6, 2, 3, 3), (6,)])])
def test_fused_double_backward_matches_finite_differences_and_autograd(layer, shapes, fmt):
    """The derivative of the input gradient w.r.t. the input and the parameters: gradcheck compares the fused
    formula with central differences of the input gradient; and it equals autograd's double backward."""
    _assert_matches_finite_differences_and_autograd(layer(fmt), shapes)


@pytest.mark.parametrize("shape", [(6, 3), (4, 3, 5), (3, 2, 3, 2, 2)], ids=["2d", "3d", "5d"])
def test_fused_batch_norm_double_backward_matches_autograd_in_every_dimensionality(shape):
    """BatchNorm1d on (N, C) and (N, C, L), BatchNorm3d on (N, C, D, H, W): F.batch_norm is intercepted for
    every dimensionality, and none of these is permuted to channels last."""
    _assert_matches_finite_differences_and_autograd(_batch_norm(torch.contiguous_format),
                                                    [shape, shape[1:2], shape[1:2]])


def test_a_third_derivative_raises_instead_of_being_wrong():
    x, w = torch.randn(4, 3, 5, 5, dtype=torch.float64), torch.rand(3, dtype=torch.float64).requires_grad_(True)
    g = _input_gradient(_batch_norm(torch.contiguous_format), x, w, torch.zeros(3, dtype=torch.float64))
    with pytest.raises(RuntimeError, match="a third derivative through runtime.double_backward: fused"):
        torch.autograd.grad(g.square().sum(), w, create_graph=True)
    (gw,) = torch.autograd.grad(g.square().sum(), w)  # the second derivative alone: what GradAlign takes
    assert gw.abs().max() > 0


def _resnet(dtype, fmt):
    torch.manual_seed(0)
    model = build_model("preact_resnet18", width=8, num_classes=10, in_shape=(3, 32, 32)).to(dtype).train()
    x = torch.rand(16, 3, 32, 32, dtype=dtype).contiguous(memory_format=fmt)
    return model.to(memory_format=fmt), x, torch.randint(0, 10, (16,))


def _gradalign_terms(kind, dtype, fmt):
    """GradAlign's penalty gradient (plus CE at x), its value and the batch-norm statistics after it."""
    model, x, y = _resnet(dtype, fmt)
    eta = torch.empty_like(x).uniform_(-8 / 255, 8 / 255, generator=torch.Generator().manual_seed(1))
    with double_backward_as(kind):
        grad_x, _ = input_grad(model, x, y)
        pen = grad_align_penalty(model, x, y, 8 / 255, eta=eta, grad_x=grad_x)
        loss = F.cross_entropy(model(x), y) + pen
    grads = torch.cat([g.flatten() for g in torch.autograd.grad(loss, list(model.parameters()))])
    return grads, pen.detach(), [t.clone() for t in model.buffers()]


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_gradalign_penalty_gradient_fused_equals_autograd(fmt):
    """On a PreActResNet-18 in train mode: float64 the same gradient as autograd's double backward to 1e-12;
    float32 the same penalty and batch-norm statistics bit for bit (first-order kernels unchanged) and the
    gradient to round-off."""
    (g64, _, _), (n64, _, _) = (_gradalign_terms(k, torch.float64, fmt) for k in ("fused", "native"))
    assert float((g64 - n64).abs().max() / n64.abs().max()) < 1e-12
    (g32, p32, b32), (n32, q32, c32) = (_gradalign_terms(k, torch.float32, fmt) for k in ("fused", "native"))
    assert torch.equal(p32, q32) and all(torch.equal(a, c) for a, c in zip(b32, c32))
    assert float((g32 - n32).abs().max() / n32.abs().max()) < 1e-5


@pytest.mark.parametrize("fmt", LAYOUTS)
def test_gradalign_penalty_gradient_fused_equals_autograd_with_batch_norm_1d(fmt):
    """A model mixing BatchNorm2d (channels last when the input is) and BatchNorm1d on (N, C) features: the
    penalty's parameter gradient is autograd's double backward's to round-off."""
    grads = {}
    for kind in ("fused", "native"):
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3, padding=1), torch.nn.BatchNorm2d(4), torch.nn.Tanh(),
                                    torch.nn.Flatten(), torch.nn.Linear(64, 8), torch.nn.BatchNorm1d(8),
                                    torch.nn.Tanh(), torch.nn.Linear(8, 5)).to(torch.float64).train()
        x = torch.rand(6, 3, 4, 4, dtype=torch.float64).contiguous(memory_format=fmt)
        y, eta = torch.randint(0, 5, (6,)), torch.empty_like(x).uniform_(-0.1, 0.1)
        with double_backward_as(kind):
            pen = grad_align_penalty(model.to(memory_format=fmt), x, y, 0.1, eta=eta)
        grads[kind] = torch.cat([g.flatten() for g in torch.autograd.grad(pen, list(model.parameters()))])
    assert torch.allclose(grads["fused"], grads["native"], rtol=1e-10, atol=1e-13)
    assert grads["native"].abs().max() > 1e-4


def test_a_loss_through_the_same_forward_gets_autograd_s_gradient():
    """CURE / LLR style: the logits of the forward the input gradient came from are in the loss too, so the
    later backward runs through the fused nodes' first-order path (ATen's kernels)."""
    grads = {}
    for kind in ("fused", "native"):
        model, x, y = _resnet(torch.float64, torch.contiguous_format)
        with double_backward_as(kind):
            logits, loss, g = loss_and_input_grad(model, x, y)
        total = loss.mean() + 10 * g.square().sum() + logits.square().mean()
        grads[kind] = torch.cat([p.flatten() for p in torch.autograd.grad(total, list(model.parameters()))])
    assert torch.allclose(grads["fused"], grads["native"], rtol=1e-10, atol=1e-13)


def test_the_fused_path_applies_on_the_cpu_in_fp32_only():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert double_backward_path("fused", cpu, "fp32") == {"requested": "fused", "used": "fused", "reason": None}
    assert double_backward_path("native", cuda, "fp16")["used"] == "native"
    for device, precision in ((cuda, "fp32"), (cpu, "bf16")):
        path = double_backward_path("fused", device, precision)
        assert path["used"] == "native" and f"(device {device.type}, precision {precision})" in path["reason"]
    with pytest.raises(ValueError, match="'fast': valid are native, fused"), double_backward_as("fast"):
        pass


def test_a_run_records_and_uses_the_double_backward_it_was_given(tiny_cfg, tmp_path):
    """runtime.double_backward set over the smoke scale's native: summary.json records it as requested and
    used, and it was used: the statistics before training (first-order only) are the native run's, the weights
    after four GradAlign steps are not (the formulas' agreement to round-off is tested above; a tiny model at
    λ = 4 amplifies round-off within a few steps)."""
    import pandas as pd

    cfg = deep_merge(tiny_cfg, {"method": {"name": "gradalign", "eps": 16}, "optim": {"batch_size": 16}})
    for kind in ("native", "fused"):
        train(deep_merge(cfg, {"runtime": {"double_backward": kind}}), tmp_path / kind)
        saved = json.loads((tmp_path / kind / "summary.json").read_text())
        assert saved["config"]["runtime"]["double_backward"] == kind
        assert saved["double_backward"] == {"requested": kind, "used": kind, "reason": None}
    first = [pd.read_csv(tmp_path / k / "history.csv").drop(columns="train_seconds").iloc[0] for k in ("native", "fused")]
    pd.testing.assert_series_equal(*first)
    a, b = (torch.load(tmp_path / k / "model_final.pt", weights_only=True)["state_dict"] for k in ("native", "fused"))
    assert any(not torch.equal(a[k], b[k]) for k in a)
