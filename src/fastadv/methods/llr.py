"""LLR (Qin, Martens, Gowal, Krishnan, Dvijotham, Fawzi, De, Stanforth & Kohli, "Adversarial
Robustness through Local Linearization", NeurIPS 2019, arXiv:1907.02610, Eq. (6)-(8)):

    g(δ; x) = |ℓ(x + δ) − ℓ(x) − δᵀ∇ₓℓ(x)|,      γ(ε, x) = max_{‖δ‖∞ ≤ ε} g(δ; x),
    loss    = ℓ_base + λ·γ(ε, x) + μ·|δ_LLᵀ∇ₓℓ(x)|,   δ_LL = the maximiser of γ,

δ_LL found by ``steps`` signed-gradient ascent steps on g from a uniform start (θ and ∇ₓℓ(x)
fixed, x + δ kept in [0,1]); γ and the μ term are then differentiable in θ, through ∇ₓℓ(x) by
double backprop. ``base``: ``clean`` = ℓ(x), the paper's objective; ``fgsm`` = ℓ at the FGSM
point (LLR as a regulariser of single-step AT). Defaults λ = 4, μ = 3: the paper's CIFAR-10
values, also used with 10 inner steps by public re-implementations (e.g. yangarbiter/
robust-local-lipschitz). Not the single-step variant in ELLE's comparison code (LIONS-EPFL/ELLE:
squared gap between two random points of the ε-ball, no inner maximisation, no μ term, FGSM base,
λ 200-5000 with ELLE-A's adaptive schedule).
"""
from __future__ import annotations

from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput, regularised_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")
loss_and_input_grad = deferred("fastadv.attacks.grad", "loss_and_input_grad")
per_example_ce = deferred("fastadv.attacks.grad", "per_example_ce")

SPEC = MethodSpec(
    "llr",
    summary="LLR (Qin et al. 2019): base loss + λ·max_δ|ℓ(x+δ) − ℓ(x) − δᵀ∇ℓ(x)| + μ·|δ_LLᵀ∇ℓ(x)|",
    impl="fastadv.methods.llr:LLR",
    params={
        "lambda": Param("float", 4.0, "λ (paper, CIFAR-10)", min=0),
        "mu": Param("float", 3.0, "μ (paper, CIFAR-10)", min=0),
        "steps": Param("int", 10, "signed-ascent steps finding δ_LL", min=1),
        "alpha": Param("float", 0.25, "their step / ε", min=0, min_exclusive=True),
        "base": Param("choice", "clean", "clean: ℓ(x), the paper's objective; fgsm: ℓ(x + δ_FGSM)", choices=("clean", "fgsm")),
        "fgsm_alpha": Param("float", 1.25, "FGSM step / ε when base is fgsm", min=0, min_exclusive=True),
    },
    passes=3,
    passes_param="steps",
    labels=(({"method.llr.base": "fgsm"}, "llr_fgsm"),),
    styles={"llr": ("LLR", "#9edae5"), "llr_fgsm": ("FGSM+LLR", "#9edae5")},
    double_backprop=True,
)


def linearity_gap(model, x, y, delta, loss_x, grad_x, loss_fn=per_example_ce) -> torch.Tensor:
    """Per-example g(δ; x) = |ℓ(x+δ) − ℓ(x) − δᵀ∇ₓℓ(x)| given ℓ(x) and ∇ₓℓ(x)."""
    first_order = (delta.flatten(1) * grad_x.flatten(1)).sum(1)
    return (loss_fn(model(x + delta), y) - loss_x - first_order).abs()


def find_delta_ll(model, x, y, eps: float, steps: int, alpha: float, loss_x, grad_x,
                  gen: torch.Generator | None = None, loss_fn=per_example_ce) -> torch.Tensor:
    """Approximate argmax over the ε-ball (∩ [0,1] box) of g(δ; x) by signed ascent; detached."""
    loss_x, grad_x = loss_x.detach(), grad_x.detach()
    delta = (x + uniform_delta(x, eps, gen)).clamp(0, 1) - x
    for _ in range(steps):
        delta.requires_grad_(True)
        g = linearity_gap(model, x, y, delta, loss_x, grad_x, loss_fn).sum()
        (grad,) = torch.autograd.grad(g, delta)
        delta = (delta.detach() + alpha * grad.sign()).clamp(-eps, eps)
        delta = (x + delta).clamp(0, 1) - x
    return delta.detach()


def llr_penalty(model, x, y, eps: float, steps: int, alpha: float, lam: float, mu: float,
                gen: torch.Generator | None = None, loss_fn=per_example_ce, grad_x=None, loss_x=None):
    """Per-example λ·g(δ_LL; x) + μ·|δ_LLᵀ∇ₓℓ(x)|, differentiable in θ (``grad_x`` and
    ``loss_x`` when already computed with a graph: ∇ₓ of the summed per-example loss)."""
    if grad_x is None:
        loss_x, grad_x = loss_and_input_grad(model, x, y, loss_fn)[1:]
    delta = find_delta_ll(model, x, y, eps, steps, alpha, loss_x, grad_x, gen, loss_fn)
    gap = linearity_gap(model, x, y, delta, loss_x, grad_x, loss_fn)
    grad_term = (delta.flatten(1) * grad_x.flatten(1)).sum(1).abs()
    return lam * gap + mu * grad_term


class LLR(Method):
    """Base loss + LLR penalty. params: ``lambda`` λ, ``mu`` μ, ``steps`` and ``alpha`` (/ε) of the
    inner maximisation, ``base`` clean | fgsm, ``fgsm_alpha`` FGSM step / ε for base fgsm."""

    def step(self, model, x, y, ctx) -> StepOutput:
        p = self.params
        return regularised_step(
            model, x, y, p["base"], p["fgsm_alpha"] * self.eps * ctx.warmup, self.eps,
            lambda loss_x, grad_x: llr_penalty(
                model, x, y, self.eps, p["steps"], p["alpha"] * self.eps, p["lambda"], p["mu"], ctx.gen,
                grad_x=grad_x, loss_x=loss_x).mean())
