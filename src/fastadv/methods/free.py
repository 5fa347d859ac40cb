from __future__ import annotations

import torch
import torch.nn.functional as F

from .base import Method, StepOutput


class Free(Method):
    """Free adversarial training (Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019).

    Each batch is replayed m times; one backward pass per replay gives both the
    parameter gradient and ∇_δℓ, and δ (kept across replays *and* batches) is then
    updated δ ← Π_ε(δ + α·sign(∇_δℓ)), x+δ kept in [0,1]. This is Shafahi et al.'s
    algorithm (one forward/backward per step); the GradAlign code's variant spends a
    second forward/backward on the updated δ. Paper scripts: m = 8, 96 epochs
    (= 12 passes over fresh data), lr_max 0.04, α = 1·ε.

    params: ``replay`` m; ``alpha`` step in units of ε.
    """

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self.replay = params["replay"]
        self.delta: torch.Tensor | None = None
        self._pending = None

    def step(self, model, x, y, ctx) -> StepOutput:
        n = len(x)
        if self.delta is None or len(self.delta) < n or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x)
        delta = self.delta[:n].clone().requires_grad_(True)
        inputs = (x + delta).clamp(0, 1)
        logits = model(inputs)
        self._pending = (x, delta, ctx.warmup)
        return StepOutput(F.cross_entropy(logits, y), logits, inputs=inputs)

    def after_backward(self) -> None:
        x, delta, warmup = self._pending
        self._pending = None
        with torch.no_grad():
            step = self.params["alpha"] * self.eps * warmup
            new = (delta + step * delta.grad.sign()).clamp(-self.eps, self.eps)
            self.delta[: len(x)] = (x + new).clamp(0, 1) - x

    def state_dict(self) -> dict:
        return {"delta": self.delta}

    def load_state_dict(self, state: dict) -> None:
        self.delta = state.get("delta")
