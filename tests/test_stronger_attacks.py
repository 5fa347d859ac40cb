"""MultiTargeted (Gowal et al. 2019) and random-targeted PGD (Kannan et al. 2018; Xie et al. 2019), each against an
independent computation: on a linear classifier the exact L∞ robustness has a closed form, and the targeted
recurrence can be written out with the gradient by hand."""
import pytest
import torch

from fastadv.attacks.multitargeted import multitargeted_broken, step_sizes, top_targets
from fastadv.attacks.pgd import pgd_attack
from fastadv.attacks.targeted import random_targets, step_size, targeted_outcomes, targeted_pgd

K, D, EPS = 10, 48, 0.03


@pytest.fixture
def linear():
    """A linear classifier in float64 and points whose ε-ball lies inside [0,1] (so only the ball binds)."""
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(D, K)).double().eval()
    with torch.no_grad():
        model[1].weight.copy_(torch.randn(K, D, generator=g, dtype=torch.float64) * 0.5)
        model[1].bias.copy_(torch.randn(K, generator=g, dtype=torch.float64) * 0.2)
    x = 0.3 + 0.4 * torch.rand(200, 3, 4, 4, generator=g, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)  # every point correct clean: what is broken is the attack's doing
    y[::7] = (y[::7] + 1) % K  # and some points wrong from the start
    return model, x, y


def exact_breakable(model, x, y, targets):
    """Whether an L∞ perturbation of size ε makes class t outscore y for some t in ``targets`` (n, k): for a linear
    model the best δ toward t is ε·sign(w_t − w_y), so the largest margin is z_t − z_y + ε‖w_t − w_y‖₁."""
    W = model[1].weight.detach()
    with torch.no_grad():
        z = model(x)
    zy = z.gather(1, y[:, None])
    zt = z.gather(1, targets)
    l1 = (W[targets] - W[y][:, None, :]).abs().sum(-1)
    return (z.argmax(1) != y) | (zt - zy + EPS * l1 > 0).any(1)


def test_multitargeted_finds_exactly_the_breakable_points_of_a_linear_model(linear):
    model, x, y = linear
    with torch.no_grad():
        logits = model(x)
    for k in (1, 3, K - 1):
        broken = multitargeted_broken(model, x, y, EPS, EPS / 4, steps=10, restarts=k, targets=k,
                                      gen=torch.Generator().manual_seed(1))
        assert torch.equal(broken, exact_breakable(model, x, y, top_targets(logits, y, k))), k
    everything = exact_breakable(model, x, y, top_targets(logits, y, K - 1))
    # Not vacuous: some points are robust and some breakable only beyond the top target.
    assert 0 < int(everything.sum()) < len(y)
    assert int(everything.sum()) > int(exact_breakable(model, x, y, top_targets(logits, y, 1)).sum())
    # PGD on cross-entropy breaks no robust point (a sound lower bound), and MultiTargeted over every target is
    # exact here, so it is at most PGD-50-10's robust accuracy.
    x_adv = pgd_attack(model, x, y, EPS, EPS / 4, 50, 10, gen=torch.Generator().manual_seed(2))
    with torch.no_grad():
        pgd_broken = model(x_adv).argmax(1) != y
    assert not (pgd_broken & ~everything).any()
    assert (~everything).float().mean() <= (~pgd_broken).float().mean()


def test_top_targets_and_step_schedule_follow_their_definitions():
    logits = torch.tensor([[0.0, 5.0, 3.0, 4.0], [9.0, 1.0, 2.0, 0.0]])
    y = torch.tensor([1, 2])
    assert top_targets(logits, y, 2).tolist() == [[3, 2], [0, 1]]  # the label itself is never a target
    with pytest.raises(ValueError, match="valid: 1 to 3"):
        top_targets(logits, y, 4)
    assert step_sizes(1.0, 4, "constant") == [1.0] * 4
    assert step_sizes(1.0, 8, "piecewise") == [1.0] * 4 + [0.1] * 2 + [0.01] * 2
    with pytest.raises(ValueError, match="valid: constant, piecewise"):
        step_sizes(1.0, 8, "cosine")


def test_random_targets_are_wrong_uniform_and_a_function_of_the_point_and_seed():
    n = 9000
    y = torch.arange(n) % K
    t = random_targets(n, K, y, seed=3)
    assert (t != y).all() and t.min() >= 0 and t.max() < K
    counts = torch.bincount((t - y) % K, minlength=K)
    assert counts[0] == 0 and counts[1:].min() > 850 and counts[1:].max() < 1150  # 1000 each expected
    # The same target for a point whatever the number of points evaluated; another seed draws others.
    assert torch.equal(random_targets(n, K, y[:100], seed=3), t[:100])
    assert not torch.equal(random_targets(n, K, y, seed=4), t)
    with pytest.raises(ValueError, match="has 1 class"):
        random_targets(10, 1, torch.zeros(10, dtype=torch.long), seed=0)


def test_targeted_pgd_is_its_recurrence_written_out(linear):
    """δ ← clip(δ − α·sign ∇_δ CE(Wx + b, t)), with ∇ = Wᵀ(softmax(z) − e_t) by hand, from the same start."""
    model, x, y = linear
    t = random_targets(len(y), K, y, seed=0)
    eps, alpha, steps = EPS, step_size(EPS, 0.004, 10), 10
    W, b = model[1].weight.detach(), model[1].bias.detach()
    xf = x.flatten(1)
    delta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(5)).flatten(1)
    delta = (xf + delta).clamp(0, 1) - xf
    for _ in range(steps):
        p = torch.softmax((xf + delta) @ W.T + b, 1)
        grad = (p - torch.nn.functional.one_hot(t, K).double()) @ W
        delta = (delta - alpha * grad.sign()).clamp(-eps, eps)
        delta = (xf + delta).clamp(0, 1) - xf
    mine = targeted_pgd(model, x, t, eps, alpha, steps, torch.Generator().manual_seed(5))
    assert torch.allclose(mine.flatten(1), xf + delta, atol=1e-12)
    correct, hit = targeted_outcomes(model, x, y, t, eps, alpha, steps, torch.Generator().manual_seed(5))
    pred = ((xf + delta) @ W.T + b).argmax(1)
    assert torch.equal(correct, pred == y) and torch.equal(hit, pred == t)
    assert 0 < int(hit.sum()) < len(y)  # the attack reaches some targets, not all
    # A point is never both correct and on its (wrong) target; no robust point (exact, above) is hit.
    assert not (correct & hit).any()
    assert not (hit & ~exact_breakable(model, x, y, t[:, None])).any()


def test_step_size_is_xie_et_al_s_rule():
    # Feature Denoising Sec. 6.1 (adv_model.py): α = 1/255 except ε/10 for 10-step attacks at ε = 16/255.
    assert step_size(16 / 255, 1 / 255, 10) == pytest.approx(1.6 / 255)
    assert step_size(16 / 255, 1 / 255, 100) == step_size(16 / 255, 1 / 255, 1000) == 1 / 255
