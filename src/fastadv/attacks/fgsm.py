"""FGSM (Goodfellow et al., ICLR 2015) with zero or random start (Wong et al., ICLR 2020)."""
from __future__ import annotations

import torch

from .grad import input_grad


def uniform_delta(x: torch.Tensor, eps: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """η ~ U[-ε, ε]^d, drawn from ``gen`` (the global RNG when None)."""
    return torch.empty_like(x).uniform_(-eps, eps, generator=gen)


def fgsm_point(x: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float) -> torch.Tensor:
    """The zero-init FGSM input for a gradient already computed at x: x + Π_ε(α·sign(grad)), in [0,1]."""
    return (x + (alpha * grad.detach().sign()).clamp(-eps, eps)).clamp(0, 1)


def fgsm_attack(model, x, y, eps: float, alpha: float | None = None, random_init: bool = False,
                gen: torch.Generator | None = None, return_grad: bool = False):
    """One signed-gradient step: δ = Π_[-ε,ε](δ₀ + α·sign(∇ₓℓ(x+δ₀))), then x+δ clipped to [0,1].

    ``alpha`` is absolute (default ε). With δ₀ = 0 any α ≥ ε lands on the corner
    ε·sign(∇), which is why the GradAlign scripts' α = 1.25ε with zero init is
    plain FGSM. With ``random_init`` δ₀ ~ U[-ε,ε] (FGSM-RS; Wong et al. use α = 1.25ε).
    Returns x_adv, and also the gradient at x+δ₀ when ``return_grad``.
    """
    alpha = eps if alpha is None else alpha
    delta0 = uniform_delta(x, eps, gen) if random_init else torch.zeros_like(x)
    delta0 = (x + delta0).clamp(0, 1) - x
    grad, _ = input_grad(model, x, y, delta0)
    delta = (delta0 + alpha * grad.sign()).clamp(-eps, eps)
    x_adv = (x + delta).clamp(0, 1).detach()
    return (x_adv, grad) if return_grad else x_adv
