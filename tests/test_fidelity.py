"""The switches that reproduce the official GradAlign code (tml-epfl/understanding-fast-adv-training),
each against a re-implementation written from reading that code (train.py, utils.py), on small batches."""
import pytest
import torch
import torch.nn.functional as F

from fastadv.attacks import fgsm_attack
from fastadv.attacks.pgd import restart_rules
from fastadv.methods import StepContext, build_method
from fastadv.training.loop import train
from fastadv.training.step import mixed_precision, train_step
from tests.helpers import AVX2, toy_model


@pytest.fixture
def batch():
    torch.manual_seed(3)
    x = torch.rand(16, 3, 2, 2, dtype=torch.float64)
    x[0, 0, 0, 0], x[1, 2, 1, 0], x[2, 1, 1, 1] = 0.0, 1.0, 1.0  # pixels exactly at the box edges (1.2 % in CIFAR-10)
    return x, torch.randint(0, 3, (16,))


def masked_grad(model, z, y):
    """∇ of the batch-mean CE at clip₀₁(z) with the clip inside the graph, computed without torch's clamp
    backward: the gradient at the clipped point, zeroed where z is not strictly inside [0,1] (torch 1.4,
    the official code's version, gives 0 at ties)."""
    zc = z.clamp(0, 1).detach().requires_grad_(True)
    g = torch.autograd.grad(F.cross_entropy(model(zc), y), zc)[0]
    return g * ((z > 0) & (z < 1))


def official_fgsm(model, x, y, eps, alpha, delta):
    """train.py L141-170: δ from zero or U[-ε,ε] (not clipped), ∇ at clamp(X+δ), δ += α·ε·sign(∇) clipped
    to [-ε,ε], then to the box."""
    g = masked_grad(model, x + delta, y)
    delta = (delta + alpha * eps * g.sign()).clamp(-eps, eps)
    return x + ((x + delta).clamp(0, 1) - x)


@pytest.mark.parametrize("random_init", [False, True])
def test_fgsm_points_with_the_clamp_in_the_graph(batch, random_init):
    x, y = batch
    model, eps = toy_model(), 0.1
    gen = torch.Generator().manual_seed(5)
    got = fgsm_attack(model, x, y, eps, 1.25 * eps, random_init, gen, clamp_in_graph=True)
    delta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(5)) if random_init \
        else torch.zeros_like(x)
    assert torch.equal(got, official_fgsm(model, x, y, eps, 1.25, delta))
    # Without the switch the edge pixels (zero-init FGSM) move where the official code leaves them.
    plain = fgsm_attack(model, x, y, eps, 1.25 * eps, random_init, torch.Generator().manual_seed(5))
    if not random_init:
        assert got[0, 0, 0, 0] == 0.0 and (plain != got).any()


@pytest.mark.parametrize("clamp", [True, False])
def test_gradalign_penalty_and_parameter_gradient(batch, clamp):
    """train.py L157-200: g1 = the FGSM gradient (clamp in the graph with the switch, detached), g2 at X+η
    without clamp and with create_graph; reg = λ(1 − mean cos) over rows where both are non-zero."""
    x, y = batch
    eps, lam = 0.2, 0.7
    results = []
    for impl in ("fastadv", "official"):
        model = toy_model()
        if impl == "fastadv":
            m = build_method({"name": "gradalign", "eps": eps * 255, "clamp_in_graph": clamp,
                              "gradalign": {"lambda": lam, "alpha": 1.25}}, "cifar10")
            out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(8)))
            reg = out.reg
            total = out.loss
        else:
            if clamp:
                g1 = masked_grad(model, x, y)
            else:
                xr = x.clone().requires_grad_(True)
                g1 = torch.autograd.grad(F.cross_entropy(model(xr), y), xr)[0]
            eta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(8))
            d = eta.clone().requires_grad_(True)
            g2 = torch.autograd.grad(F.cross_entropy(model(x + d), y), d, create_graph=True)[0]
            keep = (g1.flatten(1).norm(dim=1) != 0) & (g2.flatten(1).norm(dim=1) != 0)
            a, b = g1[keep].flatten(1), g2[keep].flatten(1)
            cos = ((a / a.norm(dim=1, keepdim=True)) * (b / b.norm(dim=1, keepdim=True))).sum(1)
            reg = lam * (1 - cos.mean())
            x_fgsm = x + ((x + (1.25 * eps * g1.sign()).clamp(-eps, eps)).clamp(0, 1) - x)
            total = F.cross_entropy(model(x_fgsm), y) + reg
        grads = torch.autograd.grad(total, list(model.parameters()))
        results.append((float(reg.detach()), torch.cat([g.flatten() for g in grads])))
    (r1, g1), (r2, g2) = results
    assert r1 == pytest.approx(r2, rel=1e-12)
    torch.testing.assert_close(g1, g2, rtol=1e-10, atol=1e-12)


def official_restart_rule(clean_correct, correct, loss):
    """utils.attack_pgd L237-245 as written: max_loss starts at 0; a restart replaces the kept one where
    its loss is ≥ the kept loss; accuracy is measured at the kept points (the clean result is not used)."""
    kept_loss, kept_correct = torch.zeros(correct.shape[1], dtype=loss.dtype), torch.zeros_like(correct[0])
    for r in range(correct.shape[0]):
        take = loss[r] >= kept_loss
        kept_correct = torch.where(take, correct[r], kept_correct)
        kept_loss = torch.maximum(kept_loss, loss[r])
    return kept_correct


def test_pgd_restart_rules_against_the_official_loop():
    g = torch.Generator().manual_seed(0)
    correct = torch.rand(10, 200, generator=g) < 0.7
    loss = torch.rand(10, 200, generator=g).round(decimals=1)  # many ties
    loss = torch.where(correct, loss, loss + 0.5)
    loss[:, :20] = torch.rand(10, 20, generator=g) + correct[:, :20] * 2  # a correct restart of highest loss
    clean = torch.rand(200, generator=g) < 0.9
    rules = restart_rules(clean, correct, loss)
    assert torch.equal(rules["max_loss"], official_restart_rule(clean, correct, loss))
    assert torch.equal(rules["worst_case"], clean & correct.all(0))
    assert rules["worst_case"].sum() <= rules["max_loss"].sum() and (rules["max_loss"] & ~rules["worst_case"]).any()


def test_free_at_official_variant_against_the_official_replay_step(batch):
    """train.py with --minibatch_replay: ∇_δ at clamp(X+δ) (first pass), δ update, then the weights'
    forward/backward at X + δ_new (second pass)."""
    x, y = batch
    eps = 0.1
    prev = (torch.rand(x.shape, generator=torch.Generator().manual_seed(2), dtype=x.dtype) * 2 - 1) * eps
    results = []
    for impl in ("fastadv", "official"):
        model = toy_model()
        if impl == "fastadv":
            m = build_method({"name": "free", "eps": eps * 255, "clamp_in_graph": True,
                              "free": {"replay": 4, "alpha": 1.0, "variant": "official"}}, "cifar10")
            m.delta = prev.clone()
            out = m.step(model, x, y, StepContext(torch.Generator().manual_seed(0)))
            new, loss = m.delta.clone(), out.loss
        else:
            g = masked_grad(model, x + prev, y)
            new = (prev + 1.0 * eps * g.sign()).clamp(-eps, eps)
            new = (x + new).clamp(0, 1) - x
            loss = F.cross_entropy(model(x + new), y)
        grads = torch.autograd.grad(loss, list(model.parameters()))
        results.append((new, torch.cat([gr.flatten() for gr in grads])))
    torch.testing.assert_close(results[0][0], results[1][0], rtol=0, atol=1e-15)
    torch.testing.assert_close(results[0][1], results[1][1], rtol=1e-12, atol=1e-14)


def test_extra_clean_forward_moves_batchnorm_statistics_only():
    from fastadv.models import build_model

    torch.manual_seed(0)
    x, y = torch.rand(8, 3, 32, 32), torch.randint(0, 10, (8,))
    stats = {}
    for extra in (False, True):
        torch.manual_seed(1)
        model = build_model("preact_resnet18", width=4, num_classes=10, in_shape=(3, 32, 32)).train()
        m = build_method({"name": "standard", "eps": 8, "extra_clean_forward": extra}, "cifar10")
        out = m.step(model, x, y, StepContext(torch.Generator()))
        stats[extra] = (float(out.loss), model.bn1.running_mean.clone() if hasattr(model, "bn1") else
                        next(b.running_mean.clone() for b in model.modules() if isinstance(b, torch.nn.BatchNorm2d)))
    assert stats[False][0] == stats[True][0]  # the same loss …
    assert not torch.equal(stats[False][1], stats[True][1])  # … but batch norm saw the batch twice


@pytest.mark.isolated  # CPU float16 kernels under autocast, double backward
def test_fp16_double_backprop_agrees_with_fp32():
    """runtime.precision fp16 (autocast + loss scaling, as the scripts' --half_prec): the GradAlign penalty's
    parameter gradient (g1 and η fixed) under float16 autocast against fp32 on the CPU's kernels, and one
    training step with dynamic loss scaling stays finite. (The CUDA check is listed in docs/guide/performance.md.)"""
    from fastadv.attacks.grad import input_grad, loss_scaling
    from fastadv.methods import grad_align_penalty
    from fastadv.models import build_model

    torch.manual_seed(0)
    model = build_model("preact_resnet18", width=8, num_classes=10, in_shape=(3, 32, 32)).train()
    x, y = torch.rand(64, 3, 32, 32), torch.randint(0, 10, (64,))
    eps = 8 / 255
    eta = torch.empty_like(x).uniform_(-eps, eps, generator=torch.Generator().manual_seed(1))
    g1, _ = input_grad(model, x, y)
    params = list(model.parameters())
    exact = torch.cat([g.flatten() for g in torch.autograd.grad(grad_align_penalty(model, x, y, eps, eta, g1), params)])
    scale = 256.0
    with torch.autocast("cpu", dtype=torch.float16), loss_scaling(scale):
        half = grad_align_penalty(model, x, y, eps, eta, g1)
    half = torch.cat([g.flatten() for g in torch.autograd.grad(half * scale, params)]) / scale
    assert float(F.cosine_similarity(half, exact, dim=0)) >= 0.98
    m = build_method({"name": "gradalign", "eps": 8, "clamp_in_graph": True,
                      "gradalign": {"lambda": 2.0, "alpha": 1.25}}, "cifar10")
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    autocast, scaler = mixed_precision("fp16", torch.device("cpu"))
    for step in range(3):  # dynamic scaling skips overflowing steps and lowers the scale
        train_step(model, opt, m, x, y, StepContext(torch.Generator().manual_seed(step)), 0.01, autocast, scaler)
    assert all(torch.isfinite(p).all() for p in model.parameters()) and scaler.get_scale() <= 65536.0


@pytest.mark.isolated  # CPU float16 kernels under autocast, double backward
def test_fp16_run_whose_gradients_are_never_finite_ends_diverged_not_completed(tmp_path, tiny_cfg, monkeypatch):
    """Under fp16 a step with non-finite gradients is skipped and the loss scale halved, while the loss stays
    finite. A loss whose gradient is NaN at every scale (√|0·Σθ|: value 0, gradient 0·∞) must end the run
    'diverged' with that reason (its final model finite), not 'completed' as if it had trained."""
    import dataclasses

    from fastadv.config.params import deep_merge
    from fastadv.methods.fgsm import FGSM
    from fastadv.training.loop import train

    step = FGSM.step

    def nan_gradient_step(self, model, x, y, ctx):
        res = step(self, model, x, y, ctx)
        zero = sum(p.sum() for p in model.parameters()) * 0
        return dataclasses.replace(res, loss=res.loss + zero.abs().sqrt())

    monkeypatch.setattr(FGSM, "step", nan_gradient_step)
    cfg = deep_merge(tiny_cfg, {"method": {"name": "fgsm"}, "optim": {"batch_size": 4, "epochs": 2},
                                "runtime": {"precision": "fp16"}})  # 32 skipped steps: scale 2^16 → 2^-16
    summary = train(cfg, tmp_path / "run")
    assert summary["status"] == "diverged" and "fp16 loss scale" in summary["reason"]
    final = torch.load(tmp_path / "run/model_final.pt", weights_only=True)["state_dict"]
    assert all(torch.isfinite(v).all() for v in final.values() if v.is_floating_point())


def test_fidelity_report_runs_both_settings_of_each_switch(tmp_path, tiny_cfg):
    """Every measured row is there and in its range; the restart-rule row equals `fastadv evaluate`
    with restart_rule both on the same model and points."""
    import json

    from fastadv.cli import main
    from fastadv.config.params import deep_merge
    from fastadv.config.study import resolve_config
    from fastadv.training.loop import train
    from tests.helpers import PARAMS

    train(deep_merge(tiny_cfg, {"optim": {"epochs": 2}, "monitor": {"every_iterations": 1}}), tmp_path / "run")
    assert main(["fidelity", "--model", str(tmp_path / "run/model_final.pt"), "--out", str(tmp_path / "f.md"),
                 "--n-points", "32", "--eval-points", "24"]) == 0
    import pandas as pd

    t = pd.read_csv(tmp_path / "f.csv")
    assert sorted(set(t["row"])) == [1, 2, 3, 4, 5, 6, 7, 8]
    for _, r in t[t["row"].isin([1, 5])].iterrows():
        assert -1 <= float(r["value"]) <= 1
    assert 0 <= float(t[(t["row"] == 2) & t["measured"].str.contains("FGSM training")]["value"].iloc[0]) <= 1
    cfg = deep_merge(resolve_config(PARAMS, "evaluate", "smoke"), {"n_points": 24, "batch_size": 1024,
                                                                   "restart_rule": "both", "full_clean": False})
    from fastadv.evaluation.protocol import evaluate

    res = evaluate(tmp_path / "run/model_final.pt", tmp_path / "e.json", cfg)
    row3 = t[t["row"] == 3]["value"].iloc[0]
    assert row3 == f"{100 * res['pgd']['acc']:.1f} % / {100 * res['pgd']['acc_max_loss']:.1f} %"
    assert res["pgd"]["acc"] <= res["pgd"]["acc_max_loss"]
    assert json.loads((tmp_path / "e.json").read_text())["pgd"]["restart_rule"] == "both"


@pytest.mark.isolated(env=AVX2)
def test_channels_last_training_agrees_with_the_default_layout(tiny_cfg, tmp_path):
    """runtime.channels_last only changes the memory layout: a training step's parameter gradient agrees to
    float round-off, and a short run ends within round-off-driven noise of the default (not bit for bit)."""
    from fastadv.config.params import deep_merge
    from fastadv.models import build_model

    torch.manual_seed(0)
    model = build_model("preact_resnet18", width=8, num_classes=10, in_shape=(3, 32, 32)).train()
    x, y = torch.rand(32, 3, 32, 32), torch.randint(0, 10, (32,))
    grads = []
    for cl in (False, True):
        m = model.to(memory_format=torch.channels_last) if cl else model
        xx = x.contiguous(memory_format=torch.channels_last) if cl else x
        grads.append(torch.cat([g.flatten() for g in torch.autograd.grad(F.cross_entropy(m(xx), y),
                                                                         list(m.parameters()))]))
    assert float(F.cosine_similarity(grads[0], grads[1], dim=0)) > 0.99999
    cfg = deep_merge(tiny_cfg, {"method": {"name": "standard"}, "optim": {"epochs": 2}, "model": {"width": 8}})
    a = train(cfg, tmp_path / "a")
    b = train(deep_merge(cfg, {"runtime": {"channels_last": True}}), tmp_path / "b")
    assert b["memory_layout"]["channels_last"] and not a["memory_layout"]["channels_last"]
    assert a["final"]["test_clean_acc"] == pytest.approx(b["final"]["test_clean_acc"], abs=0.05)


@pytest.mark.isolated  # CPU float16 kernels under autocast
@pytest.mark.parametrize("method", ["fgsm", "gradalign"])
def test_fp16_overflow_in_the_attack_backward_skips_the_step_and_lowers_the_scale(method, monkeypatch):
    """apex O1 wraps the attack's backward in amp.scale_loss too (Wong et al.'s ImageNet code, the GradAlign
    code's --half_prec): an overflow there skips the optimiser step and halves the scale. A non-finite attack
    gradient injected at the second of three steps: that step leaves the weights as they were and halves the scale;
    the steps around it train; fp32 (no scaling) takes FGSM's step whatever the attack's gradient."""
    import fastadv.attacks.grad as grad_module

    real_grad = torch.autograd.grad
    blow = {"on": False}

    def attack_grad(outputs, inputs, *args, **kwargs):  # the input gradient as an fp16 overflow leaves it
        grads = real_grad(outputs, inputs, *args, **kwargs)
        return tuple(g * float("inf") for g in grads) if blow["on"] else grads

    monkeypatch.setattr(grad_module.torch.autograd, "grad", attack_grad)
    x, y = torch.rand(16, 3, 8, 8), torch.randint(0, 10, (16,))
    # fp32 for FGSM only: GradAlign's loss is built from the attack's gradient, so there it turns non-finite itself
    for precision, skips in (("fp16", True),) + ((("fp32", False),) if method == "fgsm" else ()):
        torch.manual_seed(0)
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(3 * 8 * 8, 10))
        m = build_method({"name": method, "eps": 8, method: {"alpha": 1.25, **({"start": "zero"} if method == "fgsm"
                                                                               else {"lambda": 0.2})}}, "cifar10")
        opt = torch.optim.SGD(net.parameters(), lr=0.1)
        autocast, scaler = mixed_precision(precision, torch.device("cpu"))
        weights, scales = [], []
        for step in range(3):
            blow["on"] = step == 1
            train_step(net, opt, m, x, y, StepContext(torch.Generator().manual_seed(step)), 0.1, autocast, scaler)
            weights.append(net[1].weight.detach().clone())
            scales.append(scaler.get_scale() if scaler.is_enabled() else None)
        assert torch.equal(weights[0], weights[1]) == skips, precision
        assert not torch.equal(weights[1], weights[2]) and torch.isfinite(weights[2]).all()
        if skips:
            assert scales[1] == scales[0] / 2 and scales[2] == scales[1]


def test_wong_et_al_count_a_clean_misclassified_point_robust_the_papers_rule_does_not():
    """benchmarks/wong_pgd_counting.py (issue 42): a model wrong only at the clean point x₀ itself (its class-0 logit
    1 − 10⁶‖z − x₀‖² wins only within 10⁻³ of x₀), label 1. Every random start is classified correctly and no
    sign step of size ε/4 gets back within reach of x₀, so Wong et al.'s attack_pgd (and the GradAlign code's
    max-loss rule, which also asks nothing of x) count it robust; the paper's worst case does not. A second point
    far from x₀ is robust under every rule."""
    import importlib.util

    from tests.helpers import REPO

    spec = importlib.util.spec_from_file_location("wong_pgd_counting", REPO / "benchmarks" / "wong_pgd_counting.py")
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    x0 = torch.full((1, 3, 2, 2), 0.5)

    class OnlyWrongAtX0(torch.nn.Module):
        def forward(self, z):
            d2 = ((z - x0) ** 2).flatten(1).sum(1)
            return torch.stack([1 - 1e6 * d2, torch.zeros_like(d2)], 1)

    x, y = torch.cat([x0, torch.full((1, 3, 2, 2), 0.9)]), torch.tensor([1, 1])
    c = bench.counts(OnlyWrongAtX0(), x, y, eps=8 / 255, alpha=2 / 255, steps=10, restarts=3)
    assert c == {"n": 2, "clean": 1, "worst_case": 1, "max_loss": 2, "wong": 2, "wong_robust_but_clean_wrong": 1}
