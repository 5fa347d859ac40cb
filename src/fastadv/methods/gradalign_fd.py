"""GradAlign without double backprop: the penalty's parameter gradient by a finite difference.

GradAlign (Andriushchenko & Flammarion, NeurIPS 2020, Eq. (6)) penalises
P(θ) = mean_i [1 − cos(g1_i, g2_i(θ))] with g1 = ∇ₓL(x) held fixed (the FGSM gradient, detached
as in the official code) and g2 = ∇_z L(z; θ) at z = x + η, L the batch-mean cross-entropy.
With w = ∂P/∂g2 (fixed), the chain rule and the symmetry of mixed partial derivatives give

    ∇θ P = ∇θ ⟨w, ∇_z L(z; θ)⟩ = ∂/∂h ∇θ L(z + h·w; θ) |_{h=0}
         ≈ [∇θ L(z + h·w) − ∇θ L(z)] / h,

    w_i = −(u1_i − cos_i · u2_i) / (n · ‖g2_i‖),   u = g/‖g‖,  n = number of examples in the mean.

g2 and ∇θ L(z) come from one backward pass at z; ∇θ L(z + h·w) from one more forward/backward:
two forward/backward pairs on top of FGSM's two, no double backprop.

Two details make the difference quotient match the exact derivative:
* ReLU masks are frozen: the exact derivative treats each ReLU as linear around z (ReLU'' = 0).
  A free forward pass at z + h·w flips units whose pre-activation lies within h of 0, and each
  flip adds a jump of ∇θ L whose share of the quotient does not shrink with h. The probe
  forward therefore reuses the masks recorded at z (forward hooks on the model's nn.ReLU modules).
* BatchNorm running statistics are left untouched by the probe forward (momentum 0), so the
  model's evaluation-mode statistics see the same batches as with exact GradAlign.
h is set per batch so that the largest pixel change max|h·w| is ``fd_step``·ε.
"""
from __future__ import annotations

from contextlib import contextmanager

from fastadv.lazy import deferred, lazy
from fastadv.methods.base import StepOutput
from fastadv.methods.gradalign import GradAlign, _unit_rows, alignment_cosines
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
F = lazy("torch.nn.functional")
nn = lazy("torch.nn")
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")
loss_scale = deferred("fastadv.attacks.grad", "loss_scale")
unscaled = deferred("fastadv.attacks.grad", "unscaled")

SPEC = MethodSpec(
    "gradalign_fd",
    summary="GradAlign with the penalty's parameter gradient by a finite difference, no double backprop (fastadv; docs/guide/methods.md)",
    impl="fastadv.methods.gradalign_fd:GradAlignFD",
    params={
        "lambda": Param("float", None, "as gradalign", optional=True, min=0),
        "alpha": Param("float", 1.25, "as gradalign", min=0, min_exclusive=True),
        "fd_step": Param("float", 0.01, "largest pixel change of the difference quotient, in units of ε", min=0, max=1, min_exclusive=True),
    },
    passes=3,  # measured 1.45-1.55× FGSM at the quick scale
    styles={"gradalign_fd": ("FGSM+GradAlign (FD)", "#98df8a")},
)


@contextmanager
def probe_forward(model: nn.Module, masks: dict | None = None):
    """Inside: a forward pass of ``model`` records (``masks`` None → returned dict filled) or
    replays (``masks`` given) the output masks of every nn.ReLU, in call order per module.
    On replay BatchNorm running statistics are not updated."""
    record = masks is None
    masks = {} if record else {k: list(v) for k, v in masks.items()}

    def hook(module, inputs, output):
        if record:
            masks.setdefault(module, []).append(output > 0)
            return output
        return inputs[0] * masks[module].pop(0)

    relus = [m for m in model.modules() if isinstance(m, nn.ReLU)]
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)] if not record else []
    momenta = [bn.momentum for bn in bns]
    handles = [m.register_forward_hook(hook) for m in relus]
    for bn in bns:
        bn.momentum = 0.0
    try:
        yield masks
    finally:
        for h in handles:
            h.remove()
        for bn, mom in zip(bns, momenta):
            bn.momentum = mom


def penalty_fd_terms(model, x, y, eps: float, eta: torch.Tensor, grad_x: torch.Tensor, fd_step: float):
    """(penalty value P, h (0-d tensor), ∇θL(z) as a list per parameter, L(z + h·w) with its graph).

    ∇θ P ≈ (∇θ L(z + h·w) − ∇θ L(z)) / h; see the module docstring. Under fp16 loss scaling
    (attacks.grad.loss_scaling) ∇θL(z) comes scaled, like the parameter gradients it is subtracted from."""
    params = [p for p in model.parameters() if p.requires_grad]
    z = (x + eta).detach().requires_grad_(True)
    with probe_forward(model) as masks:
        loss_z = F.cross_entropy(model(z), y)
    scale = loss_scale()
    g2, *grads_z = torch.autograd.grad(loss_z * scale if scale != 1.0 else loss_z, [z] + params)
    g2 = unscaled(g2)
    cos, valid = alignment_cosines(grad_x.detach(), g2)
    n = valid.sum().clamp_min(1)
    penalty = torch.where(valid, 1.0 - cos, torch.zeros_like(cos)).sum() / n
    u1, u2 = _unit_rows(grad_x, valid), _unit_rows(g2, valid)
    norm2 = g2.flatten(1).norm(dim=1, keepdim=True).clamp_min(1e-30)
    w = -(u1 - cos[:, None] * u2) / (n * norm2)
    w = torch.where(valid[:, None], w, torch.zeros_like(w)).view_as(x)
    # h stays a device tensor (no host sync). w = 0 (no valid example) gives h = 0, a probe at z
    # itself, and a zero coefficient in the caller.
    wmax = w.abs().max()
    h = torch.where(wmax > 0, fd_step * eps / wmax.clamp_min(1e-30), torch.zeros_like(wmax))
    with probe_forward(model, masks):
        loss_h = F.cross_entropy(model(z.detach() + h * w), y)
    return penalty.detach(), h, grads_z, loss_h


class GradAlignFD(GradAlign):
    """FGSM (zero init) + λ·GradAlign, the penalty's gradient by the finite difference above.
    params: ``lambda``, ``alpha`` as :class:`GradAlign`; ``fd_step``: max pixel change of the
    difference quotient in units of ε."""

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self._pending = None

    targeted = False  # its own step (below) attacks untargeted: random_target is GradAlign's

    def step(self, model, x, y, ctx) -> StepOutput:
        grad_x, x_fgsm, logits = self.fgsm_logits(model, x, y, ctx)
        eta = uniform_delta(x, self.eps, ctx.gen)
        penalty, h, grads_z, loss_h = penalty_fd_terms(model, x, y, self.eps, eta, grad_x, self.params["fd_step"])
        coef = torch.where(h > 0, self.lam / h.clamp_min(1e-30), torch.zeros_like(h))
        # Value 0, gradient coef·∇θL(z + h·w); after_backward subtracts coef·∇θL(z).
        loss = F.cross_entropy(logits, y) + coef * (loss_h - loss_h.detach())
        self._pending = (coef, grads_z, [p for p in model.parameters() if p.requires_grad])
        return StepOutput(loss, logits, self.lam * penalty, x_fgsm, grad_x)

    def after_backward(self) -> None:
        if self._pending is None:
            return
        coef, grads_z, params = self._pending
        self._pending = None
        for p, g in zip(params, grads_z):
            if p.grad is None:
                p.grad = -coef * g
            else:
                p.grad.sub_(coef * g)
