"""GradAlign penalty, λ(ε) and the alignment metric against independent computations."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastadv import grad_align_penalty, gradient_alignment
from fastadv.methods import default_lambda
from fastadv.errors import FastAdvError
from tests.helpers import toy_model

# λ values passed by the official scripts (sh/exps_diff_eps_{cifar10,svhn}.sh), ε = 1, 2, …
OFFICIAL_CIFAR10 = [0.027, 0.036, 0.047, 0.063, 0.084, 0.112, 0.150, 0.200, 0.267, 0.356, 0.474, 0.632,
                    0.843, 1.124, 1.500, 2.000]
OFFICIAL_SVHN = [1.657, 1.757, 1.864, 1.976, 2.096, 2.223, 2.357, 2.500, 2.651, 2.812, 2.982, 3.162]


def per_example_grad_numpy(model, x, y):
    """Input gradient of each example's loss, one example at a time (an independent route)."""
    out = []
    for i in range(len(x)):
        xi = x[i:i + 1].clone().requires_grad_(True)
        loss = F.cross_entropy(model(xi), y[i:i + 1])
        out.append(torch.autograd.grad(loss, xi)[0].numpy().ravel())
    return np.stack(out)


def reference_penalty(model, x, y, eta, g1=None):
    """``g1`` given: held fixed, as GradAlign detaches the FGSM gradient ∇ₓℓ(x)."""
    g1 = per_example_grad_numpy(model, x, y) if g1 is None else g1
    g2 = per_example_grad_numpy(model, x + eta, y)
    keep = (np.linalg.norm(g1, axis=1) > 0) & (np.linalg.norm(g2, axis=1) > 0)
    cos = (g1 * g2).sum(1) / (np.linalg.norm(g1, axis=1) * np.linalg.norm(g2, axis=1))
    return float(np.mean(1 - cos[keep]))


@pytest.fixture
def batch():
    torch.manual_seed(1)
    x = torch.rand(6, 3, 2, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (6,))
    eta = torch.empty_like(x).uniform_(-0.3, 0.3)
    return x, y, eta


def test_lambda_matches_official_scripts():
    # The scripts print λ to 3 decimals (ε=14 is truncated to 1.124); the formula must agree to that precision.
    for eps, want in enumerate(OFFICIAL_CIFAR10, start=1):
        assert abs(default_lambda("cifar10", eps) - want) <= 1e-3, eps
    for eps, want in enumerate(OFFICIAL_SVHN, start=1):
        assert abs(default_lambda("svhn", eps) - want) <= 1e-3, eps
    assert default_lambda("cifar10", 16) == pytest.approx(2.0)
    with pytest.raises(FastAdvError, match="mnist"):
        default_lambda("mnist", 8)


def test_penalty_value_matches_per_example_numpy(batch):
    x, y, eta = batch
    model = toy_model()
    got = grad_align_penalty(model, x, y, eps=0.3, eta=eta)
    assert float(got.detach()) == pytest.approx(reference_penalty(model, x, y, eta), rel=1e-10)
    assert float(got.detach()) > 1e-4  # a curved model: the test is not vacuous


def test_penalty_parameter_gradient_matches_finite_differences(batch):
    x, y, eta = batch
    model = toy_model()
    pen = grad_align_penalty(model, x, y, eps=0.3, eta=eta)
    w = model[1].weight
    (analytic,) = torch.autograd.grad(pen, w)
    # GradAlign backpropagates only through ∇ₓℓ(x+η): the FGSM gradient is a constant (detached).
    g1 = per_example_grad_numpy(model, x, y)
    h = 1e-6
    for idx in [(0, 0), (3, 5), (7, 11), (15, 2)]:
        with torch.no_grad():
            w[idx] += h
        up = reference_penalty(model, x, y, eta, g1)
        with torch.no_grad():
            w[idx] -= 2 * h
        down = reference_penalty(model, x, y, eta, g1)
        with torch.no_grad():
            w[idx] += h
        fd = (up - down) / (2 * h)
        assert analytic[idx].item() == pytest.approx(fd, rel=1e-5, abs=1e-9), idx
    assert analytic.abs().max() > 1e-6


def test_equal_gradients_give_zero_penalty(batch):
    x, y, _ = batch
    model = toy_model()
    pen = grad_align_penalty(model, x, y, eps=0.3, eta=torch.zeros_like(x))  # x+η = x: identical gradients
    assert float(pen) == pytest.approx(0.0, abs=1e-12)
    # Hand case with η ≠ 0: two classes, logits (w·x, 0), label 0. Then ∇ₓCE = (p₀ − 1)·w with
    # p₀ − 1 < 0 for every input, so both gradients point along −w and cos = 1 exactly.
    lin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 2, bias=False)).double()
    with torch.no_grad():
        lin[1].weight[1] = 0.0
    y0 = torch.zeros(len(x), dtype=torch.long)
    pen_lin = grad_align_penalty(lin, x, y0, eps=0.3, eta=torch.full_like(x, 0.2))
    assert float(pen_lin) == pytest.approx(0.0, abs=1e-12)


def test_zero_gradients_are_excluded_without_nan(batch):
    x, y, eta = batch
    model = toy_model()
    const = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    with torch.no_grad():
        const[1].weight.zero_()  # logits independent of x: every input gradient is 0
    pen = grad_align_penalty(const, x, y, eps=0.3, eta=eta)
    (g,) = torch.autograd.grad(pen, const[1].weight)
    assert float(pen) == 0.0 and torch.isfinite(g).all()
    # Mixed batch: the zero-gradient rows are left out of the mean, the rest match the reference.
    full = grad_align_penalty(model, x, y, eps=0.3, eta=eta)
    assert float(full) == pytest.approx(reference_penalty(model, x, y, eta), rel=1e-10)


def test_gradient_alignment_metric_clips_inside_the_graph_and_matches_reference(batch):
    """The metric is the official get_grad_np + avg_cos_np: x+η clipped to [0,1] *inside* the graph,
    so coordinates pushed out of the box get zero gradient."""
    x, y, eta = batch
    model = toy_model()
    got = gradient_alignment(model, x, y, eps=0.3, eta=eta)
    inside = ((x + eta > 0) & (x + eta < 1)).flatten(1).numpy()
    assert 0 < inside.mean() < 1  # some coordinates leave the box: the test is not vacuous
    g1 = per_example_grad_numpy(model, x, y)
    g2 = per_example_grad_numpy(model, (x + eta).clamp(0, 1), y) * inside
    cos = (g1 * g2).sum(1) / (np.linalg.norm(g1, axis=1) * np.linalg.norm(g2, axis=1))
    assert got == pytest.approx(cos.mean(), rel=1e-10)
    assert -1.0 <= got <= 1.0


def test_gradalign_method_adds_lambda_times_penalty():
    from fastadv.methods import StepContext, build_method

    torch.manual_seed(0)
    model = toy_model(dtype=torch.float32)
    x = torch.rand(5, 3, 2, 2)
    y = torch.randint(0, 3, (5,))
    cfg = {"name": "gradalign", "eps": 8, "gradalign": {"lambda": None, "alpha": 1.25}}
    m = build_method(cfg, "cifar10")
    assert m.lam == pytest.approx(0.2)
    out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(3)))
    eta = torch.empty_like(x).uniform_(-8 / 255, 8 / 255, generator=torch.Generator().manual_seed(3))
    want_reg = 0.2 * grad_align_penalty(model, x, y, 8 / 255, eta=eta)
    assert float(out.reg) == pytest.approx(float(want_reg), rel=1e-5)
    assert math.isfinite(float(out.loss))


def small_resnet_batch(dtype, n=32, seed=0):
    from fastadv.models import build_model

    torch.manual_seed(seed)
    model = build_model("preact_resnet18", width=4, num_classes=10, in_shape=(3, 32, 32)).to(dtype).train()
    x = torch.rand(n, 3, 32, 32, dtype=dtype)
    y = torch.randint(0, 10, (n,))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    for _ in range(3):  # leave the initialisation a little
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    return model, x, y


@pytest.mark.parametrize("dtype,fd_step,min_cos", [(torch.float64, 1e-3, 0.9999), (torch.float32, 0.01, 0.999)])
def test_fd_penalty_gradient_matches_exact_double_backprop(dtype, fd_step, min_cos):
    """gradalign_fd's difference quotient (ReLU masks frozen) against the exact parameter gradient
    of the penalty by double backprop, on a PreActResNet-18 in train mode (batch-norm statistics)."""
    from fastadv.attacks.grad import input_grad
    from fastadv.methods.gradalign_fd import penalty_fd_terms

    model, x, y = small_resnet_batch(dtype)
    params = list(model.parameters())
    eps = 8 / 255
    eta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(1))
    grad_x, _ = input_grad(model, x, y)
    penalty = grad_align_penalty(model, x, y, eps, eta=eta, grad_x=grad_x)
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(penalty, params)])
    value, h, grads_z, loss_h = penalty_fd_terms(model, x, y, eps, eta, grad_x, fd_step)
    fd = torch.cat([((a - b) / h).flatten() for a, b in zip(torch.autograd.grad(loss_h, params), grads_z)])
    assert float(value) == pytest.approx(float(penalty), rel=1e-6)
    assert F.cosine_similarity(fd, exact, dim=0) >= min_cos
    assert float(fd.norm() / exact.norm()) == pytest.approx(1.0, abs=0.01)


def test_fd_method_step_matches_exact_method_step():
    """Whole training steps (loss.backward + after_backward) of gradalign_fd and gradalign give the
    same parameter gradient; λ is large so the penalty's part dominates the comparison."""
    from fastadv.methods import StepContext, build_method

    grads = {}
    for name in ("gradalign", "gradalign_fd"):
        model, x, y = small_resnet_batch(torch.float32)
        params = {"lambda": 20.0, "alpha": 1.25, **({"fd_step": 0.01} if name == "gradalign_fd" else {})}
        m = build_method({"name": name, "eps": 8, name: params}, "cifar10")
        out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(5)))
        model.zero_grad()
        out.loss.backward()
        m.after_backward()
        grads[name] = (torch.cat([p.grad.flatten() for p in model.parameters()]), float(out.reg), float(out.loss))
    (ge, re, le), (gf, rf, lf) = grads["gradalign"], grads["gradalign_fd"]
    assert rf == pytest.approx(re, rel=1e-5) and lf == pytest.approx(le - re, rel=1e-5)  # fd's loss: CE only
    assert F.cosine_similarity(gf, ge, dim=0) >= 0.999


def test_fd_probe_forward_leaves_batchnorm_statistics_alone():
    from fastadv.attacks.grad import input_grad
    from fastadv.methods.gradalign_fd import penalty_fd_terms

    model, x, y = small_resnet_batch(torch.float32)
    eta = torch.empty_like(x).uniform_(-0.03, 0.03, generator=torch.Generator().manual_seed(1))
    grad_x, _ = input_grad(model, x, y)
    ref = {k: v.clone() for k, v in model.state_dict().items()}
    penalty_fd_terms(model, x, y, 0.03, eta, grad_x, 0.01)
    after = model.state_dict()
    model.load_state_dict(ref)
    model(x + eta)  # the one forward pass whose statistics should count
    assert all(torch.equal(after[k], v) for k, v in model.state_dict().items())


def test_fd_step_without_any_valid_example_adds_nothing():
    """Input gradients all 0 (the model ignores its input): no penalty, h = 0, and the parameter
    gradient is exactly FGSM's cross-entropy gradient (no NaN from 0/0, no host-side branch)."""
    from fastadv.methods import StepContext, build_method

    class Blind(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.bias = torch.nn.Parameter(torch.tensor([0.3, -0.2, 0.1]))

        def forward(self, x):
            return (x.flatten(1)[:, :3] * 0.0) + self.bias

    model = Blind()
    x, y = torch.rand(4, 3, 2, 2), torch.tensor([0, 1, 2, 0])
    m = build_method({"name": "gradalign_fd", "eps": 8, "gradalign_fd": {"lambda": 2.0, "alpha": 1.25,
                                                                           "fd_step": 0.01}}, "cifar10")
    out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
    out.loss.backward()
    m.after_backward()
    (want,) = torch.autograd.grad(F.cross_entropy(Blind.forward(model, x), y), [model.bias])
    assert float(out.reg) == 0.0
    torch.testing.assert_close(model.bias.grad, want)
