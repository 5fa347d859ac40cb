"""MultiTargeted (Gowal, Uesato, Qin, Huang, Mann & Kohli 2019, "An Alternative Surrogate Loss for PGD-based
Adversarial Testing", arXiv:1910.09338): PGD on the margin z_t − z_y toward one target class t at a time.

Per point, the targets are the ``targets`` classes other than the label with the highest clean logits; restart r
attacks target r mod ``targets`` (restarts are spread over the targets, the paper's MultiTargeted), from its own
uniform random start, by ``steps`` signed-gradient ascent steps on z_t − z_y, each projected onto the ε-ball and
[0,1]. A point is broken once any iterate of any restart is misclassified (every iterate is a valid point of the
threat model; the logits of each iterate are computed for its gradient anyway). The paper reduced MadryLab's
CIFAR-10 model to 44.03 % at 8/255 with it (abstract), below PGD on cross-entropy.

Defaults (``evaluate.multitargeted_*`` in params.yaml): 9 targets (every other class of a 10-class dataset), one
restart per target, 50 steps of α = ε/4 each — the step count and α of PGD-50-10, so that beside it the only
differences are the loss and the targets, at 9/10 of its gradient evaluations. ``schedule: piecewise`` divides α by
10 at half and again at three quarters of the steps: the paper recommends decaying step sizes (Sec. 4; its own runs
used more steps and restarts than fit a CPU here).
"""
from __future__ import annotations

import torch

from fastadv.attacks.fgsm import uniform_delta

SCHEDULES = ("constant", "piecewise")


def step_sizes(alpha: float, steps: int, schedule: str) -> list[float]:
    """The step size of each of ``steps`` steps: ``alpha`` throughout (constant), or ``alpha`` divided by 10 from
    step ⌊steps/2⌋ and by 100 from step ⌊3·steps/4⌋ (piecewise)."""
    if schedule not in SCHEDULES:
        raise ValueError(f"unknown schedule {schedule!r}; valid: {', '.join(SCHEDULES)}")
    if schedule == "constant":
        return [alpha] * steps
    return [alpha * (1.0 if s < steps // 2 else 0.1 if s < 3 * steps // 4 else 0.01) for s in range(steps)]


def top_targets(logits: torch.Tensor, y: torch.Tensor, k: int) -> torch.Tensor:
    """(n, k): per point the k classes other than its label with the highest logits, highest first."""
    if not 1 <= k < logits.shape[1]:
        raise ValueError(f"targets {k} out of range; valid: 1 to {logits.shape[1] - 1} (the classes other than the "
                         f"label, of {logits.shape[1]})")
    others = logits.detach().scatter(1, y[:, None], float("-inf"))
    return others.topk(k, dim=1).indices


def margin_grad(model, x: torch.Tensor, y: torch.Tensor, t: torch.Tensor, delta: torch.Tensor):
    """(∇_δ Σᵢ (z_t − z_y)(xᵢ + δᵢ), logits at x + δ)."""
    delta = delta.detach().requires_grad_(True)
    logits = model(x + delta)
    margin = logits.gather(1, t[:, None]) - logits.gather(1, y[:, None])
    (grad,) = torch.autograd.grad(margin.sum(), delta)
    return grad, logits.detach()


def multitargeted_broken(model, x: torch.Tensor, y: torch.Tensor, eps: float, alpha: float, steps: int,
                         restarts: int, targets: int, schedule: str = "constant",
                         gen: torch.Generator | None = None) -> torch.Tensor:
    """Per point, whether MultiTargeted breaks it (clean misclassified points count as broken). Points already
    broken are not attacked again; every restart draws its start for the whole batch, so skipping never changes
    the draws of the rest."""
    with torch.no_grad():
        logits = model(x)
    broken = logits.argmax(1) != y
    order = top_targets(logits, y, targets)
    sizes = step_sizes(alpha, steps, schedule)
    for r in range(restarts):
        delta0 = uniform_delta(x, eps, gen)
        todo = (~broken).nonzero().squeeze(1)
        if len(todo) == 0:
            continue
        xs, ys, ts = x[todo], y[todo], order[todo, r % targets]
        delta = (xs + delta0[todo]).clamp(0, 1) - xs
        hit = torch.zeros_like(ys, dtype=torch.bool)
        for a in sizes:
            grad, out = margin_grad(model, xs, ys, ts, delta)
            hit |= out.argmax(1) != ys
            delta = (delta + a * grad.sign()).clamp(-eps, eps)
            delta = (xs + delta).clamp(0, 1) - xs
        with torch.no_grad():
            hit |= model(xs + delta).argmax(1) != ys
        broken[todo] = hit
    return broken
