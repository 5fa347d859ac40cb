"""L∞ PGD with random restarts (Madry et al., ICLR 2018).

Evaluation protocol of Andriushchenko & Flammarion (2020): PGD-50-10 = 50 steps,
10 restarts, step α = ε/4, uniform random start, fp32, eval mode; a point counts
as robust only if *every* restart ends correctly classified (worst case over
restarts). A point already misclassified (clean, or by an earlier restart)
cannot become robust again, so later restarts skip it: same accuracy, less work.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastadv.attacks.fgsm import start_flag, uniform_delta
from fastadv.attacks.grad import input_grad


def pgd_perturbation(model, x, y, eps: float, alpha: float, steps: int, delta: torch.Tensor,
                     clamp_in_graph: bool = False, targeted: bool = False) -> torch.Tensor:
    """``steps`` signed-gradient ascent steps from start ``delta``; returns the final δ
    (projected onto the ε-ball and the [0,1] box after every step). ``clamp_in_graph`` (the
    GradAlign code's PGD training attack): the start is not projected to the box and each gradient
    is taken through clip₀₁(x + δ). ``targeted``: toward the classes ``y`` (:func:`input_grad`)."""
    if not clamp_in_graph:
        delta = (x + delta).clamp(0, 1) - x
    for _ in range(steps):
        grad, _ = input_grad(model, x, y, delta, reduction="sum", clamp=clamp_in_graph, targeted=targeted)
        delta = (delta + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return delta.detach()


def pgd_attack(model, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
               restarts: int = 1, random_init: bool = True, skip_broken: bool = True,
               gen: torch.Generator | None = None) -> torch.Tensor:
    """Adversarial inputs x + δ with ‖δ‖∞ ≤ ε and x + δ ∈ [0,1].

    Per example, the returned input is the first one found that is misclassified,
    otherwise the highest-loss one over restarts. With ``skip_broken`` (default)
    examples already misclassified are not attacked again: the set of broken points
    (hence robust accuracy) is the same as without skipping, for the same random draws
    of the points that are still attacked.
    """
    if restarts > 1 and not random_init:
        raise ValueError("restarts > 1 needs random_init=True (deterministic restarts are identical)")
    with torch.no_grad():
        logits = model(x)
        best_loss = F.cross_entropy(logits, y, reduction="none")
        broken = logits.argmax(1) != y
    best = x.detach().clone()
    for _ in range(restarts):
        todo = (~broken).nonzero().squeeze(1) if skip_broken else torch.arange(len(y), device=x.device)
        if len(todo) == 0:
            break
        # Draw the start for the whole batch, so skipping never changes the draws of the rest.
        delta0 = uniform_delta(x, eps, gen) if random_init else torch.zeros_like(x)
        xs, ys = x[todo], y[todo]
        x_adv = (xs + pgd_perturbation(model, xs, ys, eps, alpha, steps, delta0[todo])).clamp(0, 1)
        with torch.no_grad():
            out = model(x_adv)
            loss = F.cross_entropy(out, ys, reduction="none")
            wrong = out.argmax(1) != ys
        # A misclassifying input beats any correctly classified one; among equals, the higher loss.
        prev_broken = broken[todo]
        take = (wrong & ~prev_broken) | ((wrong == prev_broken) & (loss > best_loss[todo]))
        idx = todo[take]
        best[idx] = x_adv[take]
        best_loss[idx] = loss[take]
        broken[todo] = prev_broken | wrong
    return best


def pgd_restart_outcomes(model, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                         restarts: int, gen: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(correct, loss), each (restarts, n): the final iterate of every restart on every point, from the
    same random starts as :func:`pgd_attack` (one uniform draw for the whole batch per restart)."""
    correct, losses = [], []
    for _ in range(restarts):
        delta0 = uniform_delta(x, eps, gen)
        x_adv = (x + pgd_perturbation(model, x, y, eps, alpha, steps, delta0)).clamp(0, 1)
        with torch.no_grad():
            out = model(x_adv)
        correct.append(out.argmax(1) == y)
        losses.append(F.cross_entropy(out, y, reduction="none"))
    return torch.stack(correct), torch.stack(losses)


def restart_rules(clean_correct: torch.Tensor, correct: torch.Tensor, loss: torch.Tensor) -> dict:
    """Robustness flags under the two rules for combining restarts:

    * ``worst_case``: robust iff correctly classified clean and after every restart;
    * ``max_loss`` (the GradAlign code, utils.attack_pgd): the restart with the highest final
      cross-entropy counts (ties: the later one), whatever the others found.
    """
    last_max = loss.shape[0] - 1 - loss.flip(0).argmax(0)
    return {"worst_case": clean_correct & correct.all(0),
            "max_loss": correct.gather(0, last_max[None])[0]}


class PGD:
    """L∞ PGD with random restarts as an attack object (Madry et al., ICLR 2018), e.g.
    ``x_adv = PGD(model, eps=8/255)(x, y)``.

    Defaults are the evaluation protocol of Andriushchenko & Flammarion (NeurIPS 2020): 50 steps,
    10 restarts, α = ε/4, uniform random start. ``eps`` and ``alpha`` are absolute ([0,1] pixels);
    inputs are NCHW in [0,1]. torchattacks' names work too (``PGD(model, eps=8/255, alpha=2/255, steps=10,
    random_start=True)``), with this protocol's defaults for what is not given. The model's train/eval mode
    is left as the caller set it. Random starts come from a generator seeded with ``seed``, so two calls give
    the same result.
    """

    def __init__(self, model, eps: float, alpha: float | None = None, steps: int = 50, restarts: int = 10,
                 random_init: bool | None = None, seed: int = 0, *, random_start: bool | None = None):
        if not 0 < eps <= 0.5:
            raise ValueError(f"eps {eps!r} out of range; valid: (0, 0.5] (absolute, inputs in [0,1]; 8/255 ≈ 0.031)")
        self.model, self.eps, self.steps, self.restarts = model, eps, steps, restarts
        self.alpha = eps / 4 if alpha is None else alpha
        self.random_init, self.seed = start_flag(random_init, random_start, default=True), seed

    def __call__(self, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        gen = torch.Generator(device=x.device).manual_seed(self.seed)
        return pgd_attack(self.model, x, y, self.eps, self.alpha, self.steps, self.restarts, self.random_init, gen=gen)
