"""FGSM (Goodfellow et al., ICLR 2015) with zero or random start (Wong et al., ICLR 2020)."""
from __future__ import annotations

import torch

from fastadv.attacks.grad import input_grad
from fastadv.shard import per_example


def uniform_delta(x: torch.Tensor, eps: float, gen: torch.Generator | None = None) -> torch.Tensor:
    """η ~ U[-ε, ε]^d, drawn from ``gen`` (the global RNG when None); under data parallelism, this rank's rows
    of the draw for the whole batch (fastadv.shard)."""
    return per_example(lambda m: rows_like(x, m).uniform_(-eps, eps, generator=gen), len(x))


def rows_like(x: torch.Tensor, m: int) -> torch.Tensor:
    """An uninitialised tensor like ``x`` (dtype, device, memory layout) with ``m`` rows."""
    if m == len(x):
        return torch.empty_like(x)
    channels_last = x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
    return torch.empty((m, *x.shape[1:]), dtype=x.dtype, device=x.device,
                       memory_format=torch.channels_last if channels_last else torch.contiguous_format)


def fgsm_point(x: torch.Tensor, grad: torch.Tensor, eps: float, alpha: float) -> torch.Tensor:
    """The zero-init FGSM input for a gradient already computed at x: x + Π_ε(α·sign(grad)), in [0,1]."""
    return (x + (alpha * grad.detach().sign()).clamp(-eps, eps)).clamp(0, 1)


def fgsm_attack(model, x, y, eps: float, alpha: float | None = None, random_init: bool = False,
                gen: torch.Generator | None = None, return_grad: bool = False, clamp_in_graph: bool = False,
                targeted: bool = False):
    """One signed-gradient step: `δ = Π_[-ε,ε](δ₀ + α·sign(∇ₓℓ(x+δ₀)))`, then x+δ clipped to [0,1].

    ``alpha`` is absolute (default ε). With δ₀ = 0 any α ≥ ε lands on the corner
    ε·sign(∇), which is why the GradAlign scripts' α = 1.25ε with zero init is
    plain FGSM. With ``random_init`` δ₀ ~ U[-ε,ε] (FGSM-RS; Wong et al. use α = 1.25ε).
    ``clamp_in_graph`` (the GradAlign code's training attacks): δ₀ is not projected to the box and
    the gradient is taken through clip₀₁(x + δ₀), so it is 0 at pixels not strictly inside [0,1];
    otherwise δ₀ is projected first and the gradient taken at that point.
    ``targeted``: ``y`` are target classes and the step lowers the cross-entropy toward them (:func:`input_grad`).
    Returns x_adv, and also the gradient at x+δ₀ when ``return_grad``.
    """
    alpha = eps if alpha is None else alpha
    delta0 = uniform_delta(x, eps, gen) if random_init else torch.zeros_like(x)
    if not clamp_in_graph:
        delta0 = (x + delta0).clamp(0, 1) - x
    grad, _ = input_grad(model, x, y, delta0, clamp=clamp_in_graph, targeted=targeted)
    delta = (delta0 + alpha * grad.sign()).clamp(-eps, eps)
    x_adv = (x + delta).clamp(0, 1).detach()
    return (x_adv, grad) if return_grad else x_adv


def start_flag(random_init: bool | None, random_start: bool | None, default: bool) -> bool:
    """An attack object's random start from its own name (``random_init``) or torchattacks' (``random_start``):
    either may be given, both only if they agree."""
    if random_init is not None and random_start is not None and bool(random_init) != bool(random_start):
        raise ValueError(f"random_init={random_init!r} and random_start={random_start!r} disagree; give one "
                         "(random_start is torchattacks' name for random_init)")
    given = random_init if random_init is not None else random_start
    return default if given is None else bool(given)


class FGSM:
    """FGSM as an attack object (Goodfellow et al., ICLR 2015), e.g. ``x_adv = FGSM(model, eps=8/255)(x, y)``.

    Zero start and step α = ε by default (the paper's FGSM); ``random_init=True`` (or torchattacks'
    ``random_start=True``) with α = 1.25ε is FGSM-RS (Wong et al., ICLR 2020). ``eps``/``alpha`` absolute;
    inputs NCHW in [0,1]; the model's train/eval mode is left as the caller set it.
    """

    def __init__(self, model, eps: float, alpha: float | None = None, random_init: bool | None = None, seed: int = 0,
                 *, random_start: bool | None = None):
        if not 0 < eps <= 0.5:
            raise ValueError(f"eps {eps!r} out of range; valid: (0, 0.5] (absolute, inputs in [0,1]; 8/255 ≈ 0.031)")
        self.model, self.eps, self.alpha, self.seed = model, eps, alpha, seed
        self.random_init = start_flag(random_init, random_start, default=False)

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        return fgsm_attack(self.model, x, y, self.eps, self.alpha, self.random_init, gen)
