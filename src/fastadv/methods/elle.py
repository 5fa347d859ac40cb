"""ELLE (Abad Rocamora et al., "Efficient local linearity regularization to overcome catastrophic
overfitting", ICLR 2024): single-step AT plus λ times the local linearity error

    LLE = mean_i ( ℓ(x_c) − [(1−a)·ℓ(x_a) + a·ℓ(x_b)] )²,
    x_a, x_b ~ x + U[−ε, ε]^d,  a ~ U[0,1] per example,  x_c = (1−a)·x_a + a·x_b,

computed from one forward pass over the concatenated batch (x_a; x_b; x_c): no double backprop.
A loss that is linear in the input along every segment in the ε-ball has LLE = 0. As in the
official code (LIONS-EPFL/ELLE), x_a and x_b are not clipped to [0,1] (the penalty probes the
loss surface, like GradAlign's x + η); the base attack is FGSM from zero with step α = ε.
"""
from __future__ import annotations

from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput
from fastadv.methods.registry import MethodSpec, Param
from fastadv.shard import per_example
from fastadv.units import eps_in_255ths

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
F = lazy("torch.nn.functional")
fgsm_attack = deferred("fastadv.attacks", "fgsm_attack")
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")
per_example_ce = deferred("fastadv.attacks.grad", "per_example_ce")

SPEC = MethodSpec(
    "elle",
    summary="ELLE (Abad Rocamora et al. 2024): FGSM + λ·local linearity error on random triplets, one forward pass",
    impl="fastadv.methods.elle:ELLE",
    params={
        "lambda": Param("float", None, "λ; null: the paper's 1000 for ε ≤ 8/255, 5000 above", optional=True, min=0),
        "alpha": Param("float", 1.0, "FGSM step / ε (zero init)", min=0, min_exclusive=True),
        "clip": Param("bool", True, "false: train on x + δ not clipped to [0,1], as ELLE's code does"),
    },
    passes=5,  # measured 2.5× FGSM at the quick scale
    labels=(({"model.name": "preact_resnet18_wong"}, "elle_original"),),
    styles={"elle": ("ELLE", "#bcbd22"), "elle_original": ("ELLE (its own setup)", "#c7c78a")},
    data_parallel=True,
)


def local_linearity_error(model, x, y, eps: float, gen: torch.Generator | None = None,
                          loss_fn=per_example_ce) -> torch.Tensor:
    """Per-example squared local linearity error of ``loss_fn(model(·), y)`` on one random
    triplet each (differentiable; the batch mean is ELLE's penalty)."""
    xa = x + uniform_delta(x, eps, gen)
    xb = x + uniform_delta(x, eps, gen)
    a = per_example(lambda m: torch.rand(m, device=x.device, dtype=x.dtype, generator=gen), x.shape[0])
    a_img = a.view(-1, *([1] * (x.dim() - 1)))
    xc = (1 - a_img) * xa + a_img * xb
    losses = loss_fn(model(torch.cat([xa, xb, xc])), torch.cat([y, y, y]))
    la, lb, lc = losses.chunk(3)
    return (lc - ((1 - a) * la + a * lb)) ** 2


def default_elle_lambda(eps255: float) -> float:
    """λ of the ELLE paper's CIFAR-10 experiments: 1000 for ε ≤ 8/255, 5000 above (10–20/255)."""
    return 1000.0 if eps255 <= 8 else 5000.0


class ELLE(Method):
    """FGSM training (zero init, step ``alpha``·ε) + λ·LLE. params: ``lambda`` (None: see
    :func:`default_elle_lambda`), ``alpha``."""

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        lam = params["lambda"]
        self.lam = default_elle_lambda(eps_in_255ths(eps)) if lam is None else float(lam)

    def effective_params(self) -> dict:
        return {**self.params, "lambda": self.lam}

    def weight(self, error: torch.Tensor) -> float:
        """λ for this step (ELLE-A adapts it to ``error``, the batch's LLE)."""
        return self.lam

    def step(self, model, x, y, ctx) -> StepOutput:
        x_adv, grad = fgsm_attack(model, x, y, self.eps, alpha=self.params["alpha"] * self.eps * ctx.warmup,
                                  gen=ctx.gen, return_grad=True)
        if not self.params.get("clip", True):  # ELLE's code trains on x + δ, not clipped to [0,1]
            x_adv = x + (self.params["alpha"] * self.eps * ctx.warmup * grad.sign()).clamp(-self.eps, self.eps)
        lle = local_linearity_error(model, x, y, self.eps, ctx.gen).mean()
        logits = model(x_adv)
        reg = self.weight(lle.detach()) * lle
        return StepOutput(F.cross_entropy(logits, y) + reg, logits, reg.detach(), x_adv, grad)
