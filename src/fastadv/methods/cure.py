"""CURE (Moosavi-Dezfooli, Fawzi, Uesato & Frossard, "Robustness via curvature regularization,
and vice versa", CVPR 2019, arXiv:1811.09716, Eq. (5)): penalise the curvature of the loss along
the gradient-sign direction by a finite difference of input gradients,

    L_r(x) = ‖∇ₓℓ(x + h·z) − ∇ₓℓ(x)‖²₂,   z = sign(∇ₓℓ(x)) / ‖sign(∇ₓℓ(x))‖₂,

with z held fixed and both gradients differentiable in θ (double backprop). Loss: base loss + γ·mean L_r.

Conventions here (the paper's h is an ℓ2 length on mean/std-normalised inputs, so it does not
carry over to [0,1] pixels): the displacement h·z is given in ℓ∞ units of ε — ``step`` = 1 puts
x + h·z on the FGSM corner x + ε·sign(∇ₓℓ(x)) — and x + h·z is not clipped to [0,1] (a
curvature probe, like GradAlign's x + η). ``base``: ``clean`` = ℓ(x), the paper's objective;
``fgsm`` = ℓ at the FGSM point, i.e. CURE as a catastrophic-overfitting regulariser of
single-step AT (the FGSM gradient is ∇ₓℓ(x), so it is computed once for both). ELLE's
comparison code (LIONS-EPFL/ELLE) runs that combination — step 1, base fgsm — but with ∇ₓℓ(x)
detached, batch-mean gradients and λ 1000 (8/255) / 50000 (16/255) under ELLE-A's schedule.
"""
from __future__ import annotations

from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput, regularised_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
loss_and_input_grad = deferred("fastadv.attacks.grad", "loss_and_input_grad")
per_example_ce = deferred("fastadv.attacks.grad", "per_example_ce")

SPEC = MethodSpec(
    "cure",
    summary="CURE (Moosavi-Dezfooli et al. 2019): base loss + γ·‖∇ₓℓ(x+hz) − ∇ₓℓ(x)‖², z = sign(∇ₓℓ(x))/‖·‖, double backprop",
    impl="fastadv.methods.cure:CURE",
    params={
        "lambda": Param("float", 4.0, "γ (paper: 4)", min=0),
        "step": Param("float", 1.0, "‖h·z‖∞ / ε: 1 = the FGSM corner (the paper's h is for normalised inputs)", min=0, min_exclusive=True),
        "base": Param("choice", "clean", "clean: ℓ(x), the paper's objective; fgsm: ℓ(x + δ_FGSM), a CO regulariser", choices=("clean", "fgsm")),
        "alpha": Param("float", 1.25, "FGSM step / ε when base is fgsm", min=0, min_exclusive=True),
    },
    passes=7.3,  # double backprop like GradAlign: counted the same
    labels=(({"method.cure.base": "fgsm"}, "cure_fgsm"),),
    styles={"cure": ("CURE", "#17becf"), "cure_fgsm": ("FGSM+CURE", "#17becf")},
    double_backprop=True,
)


def curvature_penalty(model, x, y, step: float, loss_fn=per_example_ce,
                      grad_x: torch.Tensor | None = None) -> torch.Tensor:
    """Per-example ‖∇ₓℓ(x + step·sign(∇ₓℓ(x))) − ∇ₓℓ(x)‖²₂ (``step`` absolute, ℓ∞), differentiable.

    ``grad_x``: a differentiable ∇ₓℓ(x) of the summed per-example loss, when already computed.
    """
    if grad_x is None:
        grad_x = loss_and_input_grad(model, x, y, loss_fn)[2]
    x_probe = x + step * grad_x.detach().sign()
    diff = loss_and_input_grad(model, x_probe, y, loss_fn)[2] - grad_x
    return (diff.flatten(1) ** 2).sum(1)


class CURE(Method):
    """Base loss + γ·CURE penalty. params: ``lambda`` γ (paper: 4), ``step`` ‖h·z‖∞ / ε,
    ``base`` clean | fgsm, ``alpha`` FGSM step / ε for base fgsm (zero init)."""

    def step(self, model, x, y, ctx) -> StepOutput:
        p = self.params
        return regularised_step(
            model, x, y, p["base"], p["alpha"] * self.eps * ctx.warmup, self.eps,
            lambda loss_x, grad_x: p["lambda"] * curvature_penalty(
                model, x, y, p["step"] * self.eps, grad_x=grad_x).mean())
