"""Per-epoch monitoring: clean / FGSM / PGD accuracy, gradient alignment, catastrophic overfitting.

All functions evaluate the model in whatever mode the caller set (the training
loop switches to eval mode, as the GradAlign code does for its statistics).
"""
from __future__ import annotations

import torch

from .attacks import fgsm_attack, pgd_attack
from .attacks.fgsm import uniform_delta
from .attacks.grad import input_grad


def _chunks(n: int, batch_size: int):
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def accuracy(model, x, y, batch_size: int = 512) -> float:
    with torch.no_grad():
        correct = sum((model(x[s]).argmax(1) == y[s]).sum() for s in _chunks(len(y), batch_size))
    return float(correct) / len(y)


def fgsm_accuracy(model, x, y, eps: float, batch_size: int = 512) -> float:
    """Accuracy under FGSM from zero with step ε (the paper's monitoring FGSM)."""
    correct = 0
    for s in _chunks(len(y), batch_size):
        x_adv = fgsm_attack(model, x[s], y[s], eps)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y[s]).sum()
    return float(correct) / len(y)


def pgd_accuracy(model, x, y, eps: float, alpha: float, steps: int, restarts: int = 1,
                 gen: torch.Generator | None = None, batch_size: int = 512) -> float:
    correct = 0
    for s in _chunks(len(y), batch_size):
        x_adv = pgd_attack(model, x[s], y[s], eps, alpha, steps, restarts, random_init=True, gen=gen)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y[s]).sum()
    return float(correct) / len(y)


def gradient_alignment(model, x, y, eps: float, eta: torch.Tensor | None = None,
                       gen: torch.Generator | None = None, batch_size: int = 512) -> float:
    """Mean over examples of cos(∇ₓℓ(x), ∇ₓℓ(clip₀₁(x+η))), η ~ U[-ε,ε]^d (``eps`` absolute).

    The monitoring metric of Andriushchenko & Flammarion (2020, Fig. 3/Fig. A;
    utils.get_grad_np + avg_cos_np): x+η is clipped to [0,1], and an example with a
    zero gradient counts as cos = 1 (the official 0/0 → 1 convention).
    """
    eta = uniform_delta(x, eps, gen) if eta is None else eta
    total = 0.0
    for s in _chunks(len(y), batch_size):
        xs = x[s]
        g1, _ = input_grad(model, xs, y[s])
        g2, _ = input_grad(model, xs, y[s], (xs + eta[s]).clamp(0, 1) - xs)
        g1, g2 = g1.flatten(1).double(), g2.flatten(1).double()
        n1, n2 = g1.norm(dim=1), g2.norm(dim=1)
        cos = (g1 * g2).sum(1) / (n1 * n2)
        total += float(torch.where((n1 > 0) & (n2 > 0), cos, torch.ones_like(cos)).sum())
    return total / len(y)


def flag_co(pgd_acc: list[float], fgsm_acc: list[float], pgd_ratio: float, min_gap: float) -> list[bool]:
    """Catastrophic overfitting flag per epoch (Wong et al. 2020; Andriushchenko & Flammarion 2020).

    Epoch e is flagged when PGD accuracy has collapsed — below ``pgd_ratio`` × the best
    PGD accuracy of any earlier epoch — while FGSM accuracy sits at least ``min_gap``
    above it (FGSM no longer finds the adversarial examples PGD finds: the CO
    signature). Epoch 0 (initialisation) is never flagged.
    """
    flags = []
    for e, (p, f) in enumerate(zip(pgd_acc, fgsm_acc)):
        best_before = max(pgd_acc[:e], default=0.0)
        flags.append(e > 0 and p < pgd_ratio * best_before and f - p >= min_gap)
    return flags
