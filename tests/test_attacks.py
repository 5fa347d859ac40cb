"""FGSM and PGD: constraints, strength ordering, restarts and skipping broken points."""
import pytest
import torch
import torch.nn.functional as F

from fastadv import pgd_attack
from fastadv.attacks import fgsm_attack, pgd_perturbation
from fastadv.training.monitor import accuracy, pgd_accuracy
from tests.helpers import toy_model


@pytest.fixture
def data():
    torch.manual_seed(0)
    x = torch.rand(64, 3, 2, 2, dtype=torch.float64)
    y = torch.randint(0, 3, (64,))
    return x, y


def assert_valid(x, x_adv, eps):
    assert (x_adv - x).abs().max() <= eps + 1e-12
    assert x_adv.min() >= 0 and x_adv.max() <= 1


@pytest.mark.parametrize("random_init", [False, True])
def test_fgsm_stays_in_ball_and_box(data, random_init):
    x, y = data
    model = toy_model()
    x_adv = fgsm_attack(model, x, y, 0.1, alpha=0.125, random_init=random_init, gen=torch.Generator().manual_seed(0))
    assert_valid(x, x_adv, 0.1)


def test_fgsm_zero_init_is_corner_of_sign_gradient(data):
    x, y = data
    model = toy_model()
    x = x * 0.5 + 0.25  # away from the box edges, so clipping to [0,1] does not interfere
    xr = x.clone().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)[0]
    x_adv = fgsm_attack(model, x, y, 0.1, alpha=0.125)  # α ≥ ε with zero init: exactly ε·sign(∇)
    assert torch.allclose(x_adv, x + 0.1 * g.sign())


def test_pgd_stays_in_ball_and_box_and_beats_fgsm(data):
    x, y = data
    model = toy_model()
    eps = 0.2
    x_pgd = pgd_attack(model, x, y, eps, eps / 4, steps=20, restarts=3, gen=torch.Generator().manual_seed(1))
    x_fgsm = fgsm_attack(model, x, y, eps)
    assert_valid(x, x_pgd, eps)
    # The loss maximiser itself (PGD from the FGSM start, as many steps) reaches a higher loss.
    delta = pgd_perturbation(model, x, y, eps, eps / 4, 20, x_fgsm - x)
    assert_valid(x, x + delta, eps)
    with torch.no_grad():
        l_pgd = F.cross_entropy(model(x + delta), y)
        l_fgsm = F.cross_entropy(model(x_fgsm), y)
        l_clean = F.cross_entropy(model(x), y)
        acc_pgd = (model(x_pgd).argmax(1) == y).double().mean()
        acc_fgsm = (model(x_fgsm).argmax(1) == y).double().mean()
    assert l_pgd >= l_fgsm >= l_clean
    assert acc_pgd <= acc_fgsm


def test_skipping_broken_points_keeps_accuracy(data):
    x, y = data
    model = toy_model(seed=3)
    kw = dict(eps=0.05, alpha=0.0125, steps=10, restarts=5)
    a = pgd_attack(model, x, y, **kw, skip_broken=True, gen=torch.Generator().manual_seed(7))
    b = pgd_attack(model, x, y, **kw, skip_broken=False, gen=torch.Generator().manual_seed(7))
    with torch.no_grad():
        ra, rb = model(a).argmax(1) == y, model(b).argmax(1) == y
    assert torch.equal(ra, rb)
    clean = accuracy(model, x, y)
    assert 0 < ra.double().mean() < clean  # the attack did something, and not everything


def test_restarts_never_reduce_attack_strength(data):
    x, y = data
    model = toy_model(seed=3)
    one = pgd_accuracy(model, x, y, 0.05, 0.0125, 10, restarts=1, gen=torch.Generator().manual_seed(7))
    five = pgd_accuracy(model, x, y, 0.05, 0.0125, 10, restarts=5, gen=torch.Generator().manual_seed(7))
    assert five <= one


def test_constant_logit_model_robust_equals_clean(data):
    x, y = data
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    with torch.no_grad():
        model[1].weight.zero_()  # logits do not depend on x: zero input gradient
    clean = accuracy(model, x, y)
    assert pgd_accuracy(model, x, y, 0.3, 0.075, 10, restarts=3) == clean
