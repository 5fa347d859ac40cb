from __future__ import annotations

import torch
import torch.nn.functional as F


def input_grad(model, x: torch.Tensor, y: torch.Tensor, delta: torch.Tensor | None = None,
               create_graph: bool = False, reduction: str = "mean") -> tuple[torch.Tensor, torch.Tensor]:
    """∇_δ CE(model(x + δ), y) at δ (0 if None); returns (gradient, logits).

    With ``create_graph`` the gradient stays differentiable w.r.t. the model's
    parameters (double backprop); otherwise it is detached.
    """
    delta = torch.zeros_like(x) if delta is None else delta.detach().clone()
    delta.requires_grad_(True)
    logits = model(x + delta)
    loss = F.cross_entropy(logits, y, reduction=reduction)
    (grad,) = torch.autograd.grad(loss, delta, create_graph=create_graph)
    return (grad if create_graph else grad.detach()), logits


def per_example_ce(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return F.cross_entropy(logits, y, reduction="none")


def loss_and_input_grad(model, x: torch.Tensor, y: torch.Tensor, loss_fn=per_example_ce):
    """(model(x), per-example ℓ(x), ∇ₓΣᵢℓᵢ(x)), all differentiable in θ (``create_graph``).

    Row i of the gradient is ∇ₓᵢℓᵢ (exactly so in eval mode; in train mode batch-norm statistics
    couple the rows slightly, as in every implementation of these regularisers).
    """
    x = x.detach().requires_grad_(True)
    logits = model(x)
    loss = loss_fn(logits, y)
    (grad,) = torch.autograd.grad(loss.sum(), x, create_graph=True)
    return logits, loss, grad
