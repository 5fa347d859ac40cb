"""Targeted adversarial training (``train.method.objective: random_target``): the training attack of FGSM, FGSM-RS,
GradAlign and PGD aims at a random wrong class per example (Kannan et al. 2018; Xie et al. 2019), checked against
each recurrence written out here with the targets drawn as the method draws them; GradAlign's alignment term is
the untargeted one; the switch is recorded in the run's config and label; other methods refuse it in one line."""
import json

import pytest
import torch
import torch.nn.functional as F

from fastadv.cli import main
from fastadv.errors import FastAdvError
from fastadv.methods import StepContext, build_method, grad_align_penalty
from fastadv.methods.registry import method_label
from tests.helpers import PARAMS

K, EPS = 5, 8 / 255


def _setup():
    g = torch.Generator().manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 4 * 4, 8), torch.nn.Tanh(),
                                torch.nn.Linear(8, K)).double()
    with torch.no_grad():
        for p in model.parameters():
            p.copy_(torch.randn(p.shape, generator=g, dtype=torch.float64))
    x = 0.2 + 0.6 * torch.rand(12, 3, 4, 4, generator=g, dtype=torch.float64)
    y = torch.randint(0, K, (12,), generator=g)
    return model, x, y


def _targets(y, seed):
    """What the step draws first from its generator: one offset in 1..K-1 per example."""
    return (y + torch.randint(1, K, (len(y),), generator=torch.Generator().manual_seed(seed))) % K


def _grad_toward(model, x, t):
    """∇ₓ CE(model(x), t), by autograd on a fresh leaf (independent of fastadv.attacks)."""
    x = x.clone().requires_grad_(True)
    (g,) = torch.autograd.grad(F.cross_entropy(model(x), t), x)
    return g


def _method(name, params, objective="random_target"):
    m = build_method({"name": name, "eps": 8, name: params, "objective": objective}, "cifar10")
    m.num_classes = K  # the tiny model's classes (build_method sets the dataset's: 10 for CIFAR-10)
    return m


def test_fgsm_and_pgd_training_attacks_move_toward_the_random_targets():
    model, x, y = _setup()
    t = _targets(y, 1)
    assert (t != y).all()
    out = _method("fgsm", {"alpha": 1.25, "start": "zero"}).step(model, x, y, StepContext(torch.Generator().manual_seed(1)))
    want = (x - EPS * _grad_toward(model, x, t).sign()).clamp(0, 1)  # zero start: α ≥ ε lands on the corner
    torch.testing.assert_close(out.inputs, want, rtol=0, atol=1e-12)
    torch.testing.assert_close(out.loss, F.cross_entropy(model(want), y))  # the training loss stays CE to y
    # PGD-3 from zero, α = ε/2: three projected descent steps on CE(·, t).
    out = _method("pgd", {"steps": 3, "alpha": 0.5, "random_init": False}).step(
        model, x, y, StepContext(torch.Generator().manual_seed(1)))
    delta = torch.zeros_like(x)
    for _ in range(3):
        delta = (delta - EPS / 2 * _grad_toward(model, x + delta, t).sign()).clamp(-EPS, EPS)
        delta = (x + delta).clamp(0, 1) - x
    torch.testing.assert_close(out.inputs, (x + delta).clamp(0, 1), rtol=0, atol=1e-12)
    # Untargeted, the same step ascends CE(·, y): another point.
    plain = _method("fgsm", {"alpha": 1.25, "start": "zero"}, "untargeted").step(
        model, x, y, StepContext(torch.Generator().manual_seed(1)))
    torch.testing.assert_close(plain.inputs, (x + EPS * _grad_toward(model, x, y).sign()).clamp(0, 1), rtol=0,
                               atol=1e-12)


def test_fgsm_rs_draws_the_targets_then_its_start():
    model, x, y = _setup()
    g = torch.Generator().manual_seed(2)
    t = (y + torch.randint(1, K, (len(y),), generator=g)) % K
    delta0 = torch.empty_like(x).uniform_(-EPS, EPS, generator=g)
    delta0 = (x + delta0).clamp(0, 1) - x
    want = (x + (delta0 - 1.25 * EPS * _grad_toward(model, x + delta0, t).sign()).clamp(-EPS, EPS)).clamp(0, 1)
    m = _method("fgsm_rs", {"alpha": 1.25})
    m.clamp_in_graph = False
    out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(2)))
    torch.testing.assert_close(out.inputs, want, rtol=0, atol=1e-12)


def test_targeted_gradalign_keeps_the_untargeted_alignment_term():
    model, x, y = _setup()
    t = _targets(y, 3)
    m = _method("gradalign", {"lambda": 0.7, "alpha": 1.25})
    out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(3)))
    x_fgsm = (x - EPS * _grad_toward(model, x, t).sign()).clamp(0, 1)
    torch.testing.assert_close(out.inputs, x_fgsm, rtol=0, atol=1e-12)
    # η is drawn after the targets, from the same generator: the penalty of the untargeted gradients at x, x + η.
    g = torch.Generator().manual_seed(3)
    torch.randint(1, K, (len(y),), generator=g)
    reg = 0.7 * grad_align_penalty(model, x, y, EPS, gen=g)
    torch.testing.assert_close(out.reg, reg.detach())
    torch.testing.assert_close(out.loss, F.cross_entropy(model(x_fgsm), y) + reg)


def test_the_objective_is_in_the_label_and_other_methods_refuse_it():
    assert method_label({"name": "gradalign", "eps": 16, "objective": "random_target"}) == "gradalign_targeted"
    assert method_label({"name": "pgd", "eps": 16, "pgd": {"steps": 2}, "objective": "random_target"}) == "pgd2_targeted"
    assert method_label({"name": "fgsm_rs", "eps": 16, "objective": "untargeted"}) == "fgsm_rs"
    with pytest.raises(FastAdvError, match="method.objective random_target for method 'nfgsm': its training "
                                           "attack is untargeted only; valid with random_target: fgsm, fgsm_rs, "
                                           "gradalign, pgd"):
        build_method({"name": "nfgsm", "eps": 8, "objective": "random_target"}, "cifar10")


def test_a_targeted_run_records_the_objective_it_trained_with(tmp_path, synthetic_sets, capsys):
    """The objective set on the command line wins over params.yaml's and is what the run records and labels."""
    args = ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "run")]
    sets = synthetic_sets + ["data.subset=64", "model.width=4", "optim.epochs=1", "optim.batch_size=64",
                             "monitor.test_points=16", "monitor.train_points=16", "monitor.pgd_steps=1",
                             "runtime.progress=never", "method.name=fgsm_rs", "method.objective=random_target"]
    assert main(args + [a for s in sets for a in ("--set", s)]) == 0
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["config"]["method"]["objective"] == "random_target"
    cfg = summary["config"]
    assert method_label(cfg["method"], cfg["model"], cfg["data"]) == "fgsm_rs_targeted"  # its rows' label
    bad = [a for s in sets[:-2] + ["method.name=elle", "method.objective=random_target"] for a in ("--set", s)]
    assert main(["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "bad")] + bad) == 2
    assert "valid with random_target: fgsm, fgsm_rs, gradalign, pgd" in capsys.readouterr().err
    assert not (tmp_path / "bad").exists()
    assert main(args[:-1] + [str(tmp_path / "bad"), "--set", "method.objective=toward_cats"]) == 2
    assert "valid: untargeted, random_target" in capsys.readouterr().err
