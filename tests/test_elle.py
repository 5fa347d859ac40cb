"""ELLE / ELLE-A (Abad Rocamora et al., ICLR 2024): local linearity error and the adaptive λ rule."""
import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from fastadv.methods import StepContext, build_method
from fastadv.methods.elle import local_linearity_error
from fastadv.methods.elle_a import AdaptiveLambda
from tests.helpers import toy_model


def linear_loss(logits, y):
    return -logits.gather(1, y[:, None]).squeeze(1)


def test_error_is_zero_for_a_loss_linear_in_the_input_and_positive_for_a_curved_one():
    torch.manual_seed(0)
    x, y = torch.rand(64, 3, 2, 2, dtype=torch.float64), torch.randint(0, 3, (64,))
    linear = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(12, 3)).double()
    err = local_linearity_error(linear, x, y, 8 / 255, torch.Generator().manual_seed(1), loss_fn=linear_loss)
    assert err.abs().max() < 1e-20
    curved = local_linearity_error(toy_model(), x, y, 8 / 255, torch.Generator().manual_seed(1))
    assert (curved > 0).all()


def test_error_matches_the_closed_form_for_a_quadratic_loss():
    """ℓ(z) = ‖z‖²: ℓ((1−a)u + a·v) − (1−a)ℓ(u) − a·ℓ(v) = −a(1−a)‖u−v‖², so LLE = a²(1−a)²‖u−v‖⁴."""
    x = torch.full((5, 3, 2, 2), 0.5, dtype=torch.float64)
    y = torch.zeros(5, dtype=torch.long)
    seen = []
    identity = torch.nn.Flatten()
    identity.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    err = local_linearity_error(identity, x, y, 0.1, torch.Generator().manual_seed(2),
                                loss_fn=lambda z, y: (z ** 2).sum(1))
    xa, xb, xc = seen[0].chunk(3)
    d = (xa - xb).flatten(1)
    a = ((xc - xa).flatten(1) / (xb - xa).flatten(1))[:, 0]  # x_c = x_a + a·(x_b − x_a)
    torch.testing.assert_close(err, a ** 2 * (1 - a) ** 2 * (d ** 2).sum(1) ** 2)


def reference_onoff(errors, lam_max=4000.0, decay=0.99, lam=0.0):
    """The official rule written out with a list and numpy (population std, ≥ 3 earlier errors):
    the λ in force after each error."""
    seen, out = [], []
    for e in errors:
        if len(seen) > 2 and e > np.mean(seen) + 2 * np.std(seen):
            lam = lam_max
        else:
            lam *= decay
        seen.append(e)
        out.append(lam)
    return out


def test_adaptive_lambda_on_a_scripted_error_sequence():
    rule = AdaptiveLambda(lam_max=4000.0, decay=0.99, lam=0.0)
    errors = [1.0, 1.2, 0.8, 1.1, 0.9, 5.0, 1.0, 1.0]
    lams = [float(rule.update(e)) for e in errors]
    assert lams[:5] == [0.0] * 5  # no spike: 0 keeps decaying to 0
    # 5.0 > mean + 2·std of [1.0, 1.2, 0.8, 1.1, 0.9] = 1.0 + 2·0.141
    assert lams[5] == 4000.0 and lams[6] == pytest.approx(3960.0) and lams[7] == pytest.approx(3920.4)
    assert lams == pytest.approx(reference_onoff(errors))
    assert float(rule.mean) == pytest.approx(np.mean(errors))
    assert math.sqrt(rule.m2 / rule.n) == pytest.approx(np.std(errors))
    again = AdaptiveLambda(4000.0, 0.99, 0.0)
    again.load_state_dict(rule.state_dict())
    assert float(again.update(50.0)) == float(rule.update(50.0)) == 4000.0
    # fewer than 3 earlier errors never count as a spike, however large the jump
    early = AdaptiveLambda(4000.0, 0.99, 1.0)
    assert [float(early.update(e)) for e in (1.0, 1.0, 100.0)] == pytest.approx([0.99, 0.9801, 0.970299])


def test_adaptive_lambda_matches_the_reference_rule_on_a_long_noisy_sequence():
    rng = np.random.default_rng(0)
    errors = list(rng.gamma(2.0, 1.0, 500) + (rng.random(500) < 0.03) * 20)
    rule = AdaptiveLambda(4000.0, 0.99, 0.0)
    got = [float(rule.update(torch.tensor(e, dtype=torch.float32))) for e in errors]
    want = reference_onoff(errors)
    assert got == pytest.approx(want) and max(want) == 4000.0


def test_elle_a_penalises_a_spike_from_the_next_step_on():
    """The official code applies λ_t to batch t and then updates λ from its error."""
    m = build_method({"name": "elle_a", "eps": 8, "elle_a": {"lambda": 0.0, "lambda_max": 4000.0, "decay": 0.99,
                                                            "alpha": 1.0}}, "cifar10")
    weights = [float(m.weight(torch.tensor(e))) for e in (1.0, 1.1, 0.9, 1.0, 9.0, 1.0)]
    assert weights == pytest.approx([0.0] * 5 + [4000.0])


def test_triplet_points_are_not_clipped_to_the_image_range():
    x = torch.zeros(16, 3, 2, 2, dtype=torch.float64)
    seen = []
    ident = torch.nn.Flatten()
    ident.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    local_linearity_error(ident, x, torch.zeros(16, dtype=torch.long), 0.1, torch.Generator().manual_seed(0),
                          loss_fn=lambda z, y: (z ** 2).sum(1))
    xa, xb, _ = seen[0].chunk(3)
    assert xa.min() < -0.05 and xb.min() < -0.05 and xa.abs().max() <= 0.1


def test_elle_step_adds_lambda_times_the_mean_error():
    torch.manual_seed(0)
    model = toy_model(dtype=torch.float32)
    x, y = torch.rand(8, 3, 2, 2), torch.randint(0, 3, (8,))
    for eps, lam in ((8, 1000.0), (16, 5000.0)):
        m = build_method({"name": "elle", "eps": eps, "elle": {"lambda": None, "alpha": 1.0}}, "cifar10")
        assert m.lam == lam
        out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(3)))
        gen = torch.Generator().manual_seed(3)
        want = lam * local_linearity_error(model, x, y, eps / 255, gen).mean().detach()
        assert float(out.reg) == pytest.approx(float(want), rel=1e-5)
        assert float(out.loss) == pytest.approx(float(F.cross_entropy(out.logits.detach(), y) + want), rel=1e-5)
