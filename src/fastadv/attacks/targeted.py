"""Random-targeted L∞ PGD: the ImageNet white-box protocol of Kannan, Kurakin & Goodfellow 2018 ("Adversarial
Logit Pairing"), Xie, Wu, van der Maaten, Yuille & He 2019 ("Feature Denoising for Improving Adversarial
Robustness", facebookresearch/ImageNet-Adversarial-Training: INSTRUCTIONS.md, adv_model.py) and Qin et al. 2019
(LLR), asked for by the GradAlign rebuttal's reviewer 2 at 16/255 on ImageNet.

One target per point, ``(label + U{1, …, K−1}) mod K`` (a uniformly drawn wrong class; adv_model.py
``_create_random_target``); a uniform random start in the ε-ball; ``steps`` signed steps that *decrease* the
cross-entropy toward the target, each projected onto the ε-ball and the image box; the final iterate is scored
(no early stop, one restart). Step size ``max(α, ε / steps)`` (adv_model.py; Feature Denoising Sec. 6.1: α = 1/255
except ε/10 for 10-step attacks). Reported: accuracy (the prediction is the true label: the defender's number) and
attack success rate (the prediction is the target: the attacker's; INSTRUCTIONS.md, note 2).
"""
from __future__ import annotations

import torch

from fastadv.attacks.fgsm import uniform_delta
from fastadv.attacks.pgd import pgd_perturbation
from fastadv.shard import per_example


def random_targets(n: int, num_classes: int, y: torch.Tensor, seed: int) -> torch.Tensor:
    """The target of each of the first ``len(y)`` points of a split of ``n``: ``(y + offset) mod K`` with offsets
    uniform on 1..K−1 drawn for all ``n`` points from ``seed`` alone, so a point's target depends on its index and
    the seed only: the same for every model, number of evaluated points and batch size."""
    if num_classes < 2:
        raise ValueError(f"a targeted attack needs a wrong class to aim at; the dataset has {num_classes} class")
    offsets = torch.randint(1, num_classes, (n,), generator=torch.Generator().manual_seed(seed))
    return (y + offsets[:len(y)].to(y.device)) % num_classes


def random_wrong_classes(y: torch.Tensor, num_classes: int, gen: torch.Generator) -> torch.Tensor:
    """``(y + U{1, …, K−1}) mod K`` per example, drawn from ``gen`` for the whole batch (this rank's rows under data
    parallelism, fastadv.shard): the training attack's random targets (targeted adversarial training)."""
    if num_classes < 2:
        raise ValueError(f"a targeted attack needs a wrong class to aim at; the dataset has {num_classes} class")
    offsets = per_example(lambda m: torch.randint(1, num_classes, (m,), generator=gen, device=gen.device), len(y))
    return (y + offsets.to(y.device)) % num_classes


def step_size(eps: float, alpha: float, steps: int) -> float:
    """Xie et al.'s rule: the larger of α and ε / steps (so a 10-step attack can reach the boundary of the ball)."""
    return max(alpha, eps / steps)


def targeted_pgd(model, x: torch.Tensor, t: torch.Tensor, eps: float, alpha: float, steps: int,
                 gen: torch.Generator | None = None) -> torch.Tensor:
    """x + δ after ``steps`` steps δ ← Π(δ − α·sign ∇_δ CE(model(x + δ), t)) from δ ~ U[−ε, ε] (projected onto
    the box first); ``alpha`` as given (see :func:`step_size`)."""
    delta = pgd_perturbation(model, x, t, eps, alpha, steps, uniform_delta(x, eps, gen), targeted=True)
    return (x + delta).detach()


def targeted_outcomes(model, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, eps: float, alpha: float,
                      steps: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, hit) per point after :func:`targeted_pgd`: the prediction is the label, is the target."""
    x_adv = targeted_pgd(model, x, t, eps, alpha, steps, gen)
    with torch.no_grad():
        pred = model(x_adv).argmax(1)
    return pred == y, pred == t
