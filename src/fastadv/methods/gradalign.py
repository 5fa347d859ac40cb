"""GradAlign (Andriushchenko & Flammarion, "Understanding and Improving Fast Adversarial
Training", NeurIPS 2020, arXiv:2007.02617, Eq. (6)):

    min_θ  E[ ℓ(x + δ_FGSM) ] + λ · E[ 1 − cos(∇ₓℓ(x), ∇ₓℓ(x + η)) ],   η ~ U[-ε, ε]^d.

∇ₓℓ(x) is the FGSM gradient (zero init), detached; ∇ₓℓ(x + η) is built with
``create_graph=True`` so the penalty backpropagates into θ (double backprop).
As in the official code (train.py), x + η is *not* clipped to [0,1] in the
penalty, and examples where either gradient is exactly 0 are left out of the mean (the whole
batch's such examples also when it is split over data-parallel ranks: fastadv.shard.mean_of_selected).
"""
from __future__ import annotations

import math

from fastadv.errors import FastAdvError
from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput
from fastadv.methods.registry import MethodSpec, Param
from fastadv.shard import mean_of_selected
from fastadv.units import eps_in_255ths

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
F = lazy("torch.nn.functional")
fgsm_point = deferred("fastadv.attacks.fgsm", "fgsm_point")
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")
input_grad = deferred("fastadv.attacks.grad", "input_grad")

SPEC = MethodSpec(
    "gradalign",
    summary="FGSM + λ·E[1 − cos(∇ₓℓ(x), ∇ₓℓ(x+η))], double backprop (Andriushchenko & Flammarion 2020); lr_max 0.3 in the scripts",
    impl="fastadv.methods.gradalign:GradAlign",
    params={
        "lambda": Param("float", None, "λ; null: the scripts' λ(ε), CIFAR-10 0.02·10^(ε/8), SVHN 1.5625·1.6^(ε/8)", optional=True, min=0),
        "alpha": Param("float", 1.25, "FGSM step / ε (zero init, as the scripts)", min=0, min_exclusive=True),
    },
    passes=7.3,  # ≈ 7.3 passes: the measured GradAlign/FGSM step ratio (3.3-4.0× at the paper scale) × FGSM's 2
    styles={"gradalign": ("FGSM+GradAlign", "#2ca02c")},
    # ImageNet has no λ(ε) rule: λ is always set by hand there and is part of the name (the variants
    # gradalign_l<λ> of params.yaml), so that the runs of a λ grid stay apart in the tables
    labels=(({"data.dataset": "imagenet"}, "gradalign_l{lambda:g}"),),
    data_parallel=True,
    double_backprop=True,
)


def default_lambda(dataset: str, eps255: float) -> float:
    """λ(ε) of the official scripts (sh/exps_diff_eps_*.sh), ε in /255.

    CIFAR-10: λ = 0.02·10^(ε/8)  (log-linear; 0.2 at ε=8, 2.0 at ε=16).
    SVHN:     λ = (2.5²/4)·1.6^(ε/8) = 1.5625·1.6^(ε/8)  (2.5 at ε=8).
    The scripts pass these rounded to 3 decimals.
    """
    if dataset == "cifar10":
        return 0.02 * 10 ** (eps255 / 8)
    if dataset == "svhn":
        return 2.5 ** 2 / 4.0 * 1.6 ** (eps255 / 8)
    raise FastAdvError(f"no published GradAlign λ(ε) for dataset {dataset!r} (only cifar10, svhn); "
                       "set method.gradalign.lambda")


def _unit_rows(g: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """Rows of g / ‖g‖; rows that are not ``valid`` get norm 1, so no 0/0 (and no NaN gradient)."""
    g = g.flatten(1)
    sq = (g * g).sum(1)
    return g / torch.where(valid, sq, torch.ones_like(sq)).sqrt()[:, None]


def alignment_cosines(grad_x: torch.Tensor, grad_eta: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-example cos(grad_x, grad_eta) and the mask of examples where both gradients are ≠ 0."""
    valid = (grad_x.flatten(1).detach().abs().amax(1) > 0) & (grad_eta.flatten(1).detach().abs().amax(1) > 0)
    cos = (_unit_rows(grad_x, valid) * _unit_rows(grad_eta, valid)).sum(1)
    return cos, valid


def grad_align_penalty(model, x, y, eps: float, eta: torch.Tensor | None = None,
                       grad_x: torch.Tensor | None = None, gen: torch.Generator | None = None) -> torch.Tensor:
    """Differentiable mean over examples of 1 − cos(∇ₓℓ(x), ∇ₓℓ(x+η)); *not* multiplied by λ.

    ``eps`` is absolute. ``eta`` defaults to a fresh draw from U[-ε,ε]^d; ``grad_x``
    (e.g. the FGSM gradient already computed) is recomputed when None. Examples where
    either gradient is 0 are excluded; if none is left the penalty is 0.
    """
    if grad_x is None:
        grad_x, _ = input_grad(model, x, y)
    eta = uniform_delta(x, eps, gen) if eta is None else eta
    grad_eta, _ = input_grad(model, x, y, eta, create_graph=True)
    cos, valid = alignment_cosines(grad_x.detach(), grad_eta)
    # under data parallelism: this rank's part of the whole batch's mean (fastadv.shard)
    return mean_of_selected(torch.where(valid, 1.0 - cos, torch.zeros_like(cos)).sum(), valid.sum(), len(valid))


class GradAlign(Method):
    """FGSM (zero init) + λ·GradAlign penalty. params: ``lambda`` (None → λ(ε), see
    :func:`default_lambda`), ``alpha`` FGSM step in units of ε (1.25 in the scripts)."""

    targeted = True

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        lam = params["lambda"]
        self.lam = default_lambda(dataset, eps_in_255ths(eps)) if lam is None else float(lam)
        if not math.isfinite(self.lam):
            raise FastAdvError(f"GradAlign λ must be finite, got {self.lam!r}")

    def effective_params(self) -> dict:
        return {**self.params, "lambda": self.lam}

    def fgsm_logits(self, model, x, y, ctx) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(∇ₓℓ(x), the FGSM point, logits there): the FGSM gradient doubles as the penalty's g1."""
        grad_x, _ = input_grad(model, x, y, clamp=self.clamp_in_graph)
        x_fgsm = fgsm_point(x, grad_x, self.eps, self.params["alpha"] * self.eps * ctx.warmup)
        return grad_x, x_fgsm, model(x_fgsm)

    def step(self, model, x, y, ctx) -> StepOutput:
        if self.objective != "untargeted":
            return self._targeted_step(model, x, y, ctx)
        grad_x, x_fgsm, logits = self.fgsm_logits(model, x, y, ctx)
        reg = self.lam * grad_align_penalty(model, x, y, self.eps, grad_x=grad_x, gen=ctx.gen)
        return StepOutput(F.cross_entropy(logits, y) + reg, logits, reg.detach(), x_fgsm, grad_x)

    def _targeted_step(self, model, x, y, ctx) -> StepOutput:
        """FGSM toward random targets; the alignment term is the untargeted one, cos(∇ℓ(x, y), ∇ℓ(x + η, y)), so
        its ∇ℓ(x, y) is one backward more (the FGSM gradient here is toward the targets)."""
        labels, _ = self.attack_labels(y, ctx)
        grad_t, _ = input_grad(model, x, labels, clamp=self.clamp_in_graph, targeted=True)
        x_fgsm = fgsm_point(x, grad_t, self.eps, self.params["alpha"] * self.eps * ctx.warmup)
        logits = model(x_fgsm)
        reg = self.lam * grad_align_penalty(model, x, y, self.eps, gen=ctx.gen)
        return StepOutput(F.cross_entropy(logits, y) + reg, logits, reg.detach(), x_fgsm, grad_t)
