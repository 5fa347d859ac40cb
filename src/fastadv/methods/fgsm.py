from fastadv.lazy import deferred
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
fgsm_attack = deferred("fastadv.attacks", "fgsm_attack")

SPEC = MethodSpec(
    "fgsm",
    summary="FGSM from zero: δ = ε·sign(∇ₓℓ(x)) (Goodfellow et al. 2015)",
    impl="fastadv.methods.fgsm:FGSM",
    params={
        "alpha": Param("float", 1.25, "step / ε; zero init clips any α ≥ 1 to ε (the scripts pass 1.25)", min=0, min_exclusive=True),
    },
    passes=2,
    styles={"fgsm": ("FGSM", "#d62728")},
    data_parallel=True,
)


class FGSM(Method):
    """FGSM adversarial training with zero init (Goodfellow et al., ICLR 2015), as run in the
    GradAlign paper (Andriushchenko & Flammarion, NeurIPS 2020, Fig. 1: ``--attack_init=zero``):
    δ = ε·sign(∇ₓℓ(x)) (α ≥ 1 is clipped back to the ε-ball), loss ℓ(x + δ).

    params: ``alpha`` — step in units of ε (1.25 in the GradAlign scripts; irrelevant when ≥ 1).
    """

    def step(self, model, x, y, ctx) -> StepOutput:
        alpha = self.params["alpha"] * self.eps * ctx.warmup
        x_adv, grad = fgsm_attack(model, x, y, self.eps, alpha=alpha, random_init=False, gen=ctx.gen,
                                  return_grad=True, clamp_in_graph=self.clamp_in_graph)
        return ce_step(model, x_adv, y, grad)
