"""CURE (Moosavi-Dezfooli et al. 2019) and LLR (Qin et al. 2019): penalties against hand-computed
cases, double-backprop gradients against finite differences, and the training step's loss."""
import pytest
import torch
import torch.nn.functional as F

from fastadv.methods import StepContext, build_method
from fastadv.methods.cure import curvature_penalty
from fastadv.methods.llr import find_delta_ll, linearity_gap, llr_penalty
from tests.helpers import toy_model

A = torch.tensor([0.5, 1.0, 2.0, 3.0] * 3, dtype=torch.float64)  # curvatures of the quadratic loss


def quadratic_loss(z, y):
    """ℓ(z) = ½ Σᵢ aᵢ zᵢ²: ∇ℓ = a⊙z, Hessian diag(a), and ℓ(x+δ) − ℓ(x) − δᵀ∇ℓ(x) = ½ Σ aᵢ δᵢ²."""
    return 0.5 * (A * z ** 2).sum(1)


def linear_loss(logits, y):
    return -logits.gather(1, y[:, None]).squeeze(1)


def inputs(n=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    x = 0.3 + 0.4 * torch.rand(n, 3, 2, 2, dtype=torch.float64, generator=g)  # away from the [0,1] edges
    return x, torch.randint(0, 3, (n,), generator=g)


def test_cure_penalty_is_zero_for_a_linear_loss_and_hand_computed_for_a_quadratic_one():
    x, y = inputs()
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    assert curvature_penalty(linear, x, y, 0.05, loss_fn=linear_loss).abs().max() < 1e-24
    # ∇ℓ(x + s·sign(a⊙x)) − ∇ℓ(x) = s·a⊙sign(x) (x > 0), so the penalty is s²·Σ aᵢ².
    pen = curvature_penalty(torch.nn.Flatten(), x, y, 0.05, loss_fn=quadratic_loss)
    torch.testing.assert_close(pen, torch.full((6,), 0.05 ** 2 * float((A ** 2).sum()), dtype=torch.float64))


def test_cure_penalty_gradient_matches_finite_differences():
    """The penalty reaches θ through *both* input gradients (double backprop); a detached ∇ₓℓ(x)
    would make the analytic gradient disagree with the finite differences that gradcheck takes."""
    x, y = inputs(4)
    model = toy_model()

    def pen_through(weight):
        return curvature_penalty(lambda z: torch.func.functional_call(model, {"1.weight": weight}, (z,)),
                                 x, y, 0.05).sum()

    weight = model[1].weight.detach().clone().requires_grad_(True)
    torch.autograd.gradcheck(pen_through, (weight,))
    (grad,) = torch.autograd.grad(pen_through(weight), weight)
    assert grad.abs().max() > 1e-6


def test_llr_gap_is_zero_for_a_linear_loss_and_finds_the_quadratic_maximum():
    x, y = inputs()
    eps, gen = 0.1, torch.Generator().manual_seed(3)
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    xg = x.clone().requires_grad_(True)
    loss_x = linear_loss(linear(xg), y)
    (grad_x,) = torch.autograd.grad(loss_x.sum(), xg)
    delta = torch.empty_like(x).uniform_(-eps, eps, generator=gen)
    assert linearity_gap(linear, x, y, delta, loss_x.detach(), grad_x, linear_loss).abs().max() < 1e-12
    # Quadratic: g(δ) = ½ Σ aᵢ δᵢ² is maximised at every corner, γ(ε, x) = ½ ε² Σ aᵢ; ascent from
    # a uniform start moves each coordinate outwards and reaches the corner ε·sign(δ₀) in ≤ 4 steps of ε/4.
    ident = torch.nn.Flatten()
    loss_x, grad_x = quadratic_loss(x.flatten(1), y), A * x.flatten(1)
    delta0 = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(4))
    delta = find_delta_ll(ident, x, y, eps, 10, eps / 4, loss_x, grad_x.view_as(x), torch.Generator().manual_seed(4),
                          quadratic_loss)
    torch.testing.assert_close(delta, eps * delta0.sign())
    gap = linearity_gap(ident, x, y, delta, loss_x, grad_x.view_as(x), quadratic_loss)
    torch.testing.assert_close(gap, torch.full((6,), 0.5 * eps ** 2 * float(A.sum()), dtype=torch.float64))
    pen = llr_penalty(ident, x, y, eps, 10, eps / 4, lam=4.0, mu=3.0, gen=torch.Generator().manual_seed(4),
                      loss_fn=quadratic_loss)
    want = 4.0 * 0.5 * eps ** 2 * A.sum() + 3.0 * (eps * delta0.sign().flatten(1) * A * x.flatten(1)).sum(1).abs()
    torch.testing.assert_close(pen, want)


def test_llr_ascent_stays_in_the_ball_and_beats_its_random_start():
    x, y = inputs(32)
    x[:4] = 0.0  # some pixels at the box edge: x + δ must stay in [0,1]
    model, eps = toy_model(), 0.2
    xg = x.clone().requires_grad_(True)
    loss_x = F.cross_entropy(model(xg), y, reduction="none")
    (grad_x,) = torch.autograd.grad(loss_x.sum(), xg)
    start = (x + torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(5))).clamp(0, 1) - x
    delta = find_delta_ll(model, x, y, eps, 10, eps / 4, loss_x.detach(), grad_x, torch.Generator().manual_seed(5))
    assert delta.abs().max() <= eps + 1e-12 and ((x + delta) >= 0).all() and ((x + delta) <= 1).all()
    before = linearity_gap(model, x, y, start, loss_x.detach(), grad_x).sum()
    after = linearity_gap(model, x, y, delta, loss_x.detach(), grad_x).sum()
    assert after > 1.5 * before


@pytest.mark.parametrize("name", ["cure", "llr"])
@pytest.mark.parametrize("base", ["clean", "fgsm"])
def test_step_loss_is_the_base_loss_plus_the_weighted_penalty(name, base):
    torch.manual_seed(0)
    model = toy_model(dtype=torch.float32)
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    params = {"cure": {"lambda": 4.0, "step": 1.0, "base": base, "alpha": 1.25},
              "llr": {"lambda": 4.0, "mu": 3.0, "steps": 3, "alpha": 0.25, "base": base, "fgsm_alpha": 1.25}}[name]
    m = build_method({"name": name, "eps": 8, name: params}, "cifar10")
    out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(1)))
    eps = 8 / 255
    if name == "cure":
        want_reg = 4.0 * curvature_penalty(model, x, y, eps).mean().detach()
    else:
        want_reg = llr_penalty(model, x, y, eps, 3, eps / 4, 4.0, 3.0, torch.Generator().manual_seed(1)).mean().detach()
    assert float(out.reg) == pytest.approx(float(want_reg), rel=1e-5)
    xg = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(xg), y, reduction="sum"), xg)
    x_base = (x + eps * g.sign()).clamp(0, 1) if base == "fgsm" else x
    torch.testing.assert_close(out.logits, model(x_base))
    assert float(out.loss.detach()) == pytest.approx(float(F.cross_entropy(model(x_base), y).detach() + want_reg), rel=1e-5)
    out.loss.backward()  # differentiable end to end (the penalty through double backprop)
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
