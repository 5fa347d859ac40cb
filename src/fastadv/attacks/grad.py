from __future__ import annotations

import contextlib
import contextvars

import torch
import torch.nn.functional as F

from fastadv.attacks.double_backward import fused_double_backward, fused_requested

class LossScaling:
    """The loss scale of one fp16 mixed-precision step (runtime.precision: fp16): input gradients are taken of
    the scaled loss and divided back, so small gradients do not underflow in half precision — what the GradAlign
    code and Wong et al.'s ImageNet code do with apex's ``amp.scale_loss`` around the attack's backward too.
    ``found_inf``: a 0-d bool tensor, true once a scaled input gradient of the step was non-finite (an overflow;
    kept on the device: no host sync); :meth:`poison` then makes the step's loss non-finite, so the gradient
    scaler skips the step and lowers the scale, as apex O1 does after an overflow in any of the step's scaled
    backward passes (under data parallelism the poisoned gradients reach every rank through its all-reduce)."""

    def __init__(self, scale: float):
        self.scale, self.found_inf = float(scale), None

    def unscaled(self, grad: torch.Tensor) -> torch.Tensor:
        if self.scale == 1.0:
            return grad
        bad = ~torch.isfinite(grad).all()
        self.found_inf = bad if self.found_inf is None else self.found_inf | bad
        return grad / self.scale

    def poison(self, loss: torch.Tensor) -> torch.Tensor:
        if self.found_inf is None:
            return loss
        return loss * torch.where(self.found_inf, float("nan"), 1.0).to(loss.dtype)


_LOSS_SCALE = contextvars.ContextVar("fastadv_loss_scale", default=LossScaling(1.0))


@contextlib.contextmanager
def loss_scaling(scale: float):
    """Inside: :func:`input_grad` and :func:`loss_and_input_grad` scale the loss by ``scale``; yields the
    :class:`LossScaling` that records overflows."""
    scaling = LossScaling(scale)
    token = _LOSS_SCALE.set(scaling)
    try:
        yield scaling
    finally:
        _LOSS_SCALE.reset(token)


def loss_scale() -> float:
    return _LOSS_SCALE.get().scale


def unscaled(grad: torch.Tensor) -> torch.Tensor:
    """A gradient of the scaled loss divided back by the scale, its overflow recorded (:class:`LossScaling`)."""
    return _LOSS_SCALE.get().unscaled(grad)


def _graph_of(create_graph: bool):
    """The context of the forward whose input gradient is taken: with ``create_graph`` under
    ``runtime.double_backward: fused``, nodes with a fused double backward (attacks.double_backward)."""
    return fused_double_backward() if create_graph and fused_requested() else contextlib.nullcontext()


def input_grad(model, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor | None = None,
               create_graph: bool = False, reduction: str = "mean", clamp: bool = False, targeted: bool = False
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """∇_δ CE(model(x + δ), y) at δ (0 if None); returns (gradient, logits).

    With ``create_graph`` the gradient stays differentiable w.r.t. the model's
    parameters (double backprop); otherwise it is detached. ``clamp``: the input is
    clip₀₁(x + δ) *inside* the graph, as in the GradAlign code's training attacks, so a
    coordinate not strictly inside [0,1] gets zero gradient. ``targeted``: ``y`` holds target classes and the
    gradient is of −CE, so that an ascent step moves toward them (a targeted attack minimises CE to its target).
    """
    delta = torch.zeros_like(x) if delta is None else delta.detach().clone()
    delta.requires_grad_(True)
    with _graph_of(create_graph):
        logits = model((x + delta).clamp(0, 1) if clamp else x + delta)
    loss = F.cross_entropy(logits, y, reduction=reduction)
    loss = -loss if targeted else loss
    scale = loss_scale()
    (grad,) = torch.autograd.grad(loss * scale if scale != 1.0 else loss, delta, create_graph=create_graph)
    grad = unscaled(grad)
    return (grad if create_graph else grad.detach()), logits


def per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def loss_and_input_grad(model, x: torch.Tensor, y: torch.Tensor, loss_fn=per_example_ce):
    """(model(x), per-example ℓ(x), ∇ₓΣᵢℓᵢ(x)), all differentiable in θ (``create_graph``).

    Row i of the gradient is ∇ₓᵢℓᵢ (exactly so in eval mode; in train mode batch-norm statistics
    couple the rows slightly, as in every implementation of these regularisers).
    """
    x = x.detach().requires_grad_(True)
    with _graph_of(True):
        logits = model(x)
    loss = loss_fn(logits, y)
    scale = loss_scale()
    (grad,) = torch.autograd.grad(loss.sum() * scale, x, create_graph=True)
    return logits, loss, unscaled(grad)
