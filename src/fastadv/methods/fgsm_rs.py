from fastadv.lazy import deferred
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
fgsm_attack = deferred("fastadv.attacks", "fgsm_attack")

SPEC = MethodSpec(
    "fgsm_rs",
    summary="FGSM from δ₀ ~ U[−ε,ε] (Wong et al. 2020)",
    impl="fastadv.methods.fgsm_rs:FGSMRS",
    params={
        "alpha": Param("float", 1.25, "step / ε after the uniform start (Wong et al. 2020)", min=0, min_exclusive=True),
    },
    passes=2,
    styles={"fgsm_rs": ("FGSM-RS", "#ff7f0e")},
    data_parallel=True,
)


class FGSMRS(Method):
    """FGSM with random start (Wong, Rice & Kolter, "Fast is better than free", ICLR 2020):
    δ₀ ~ U[-ε,ε]^d, δ = Π_ε(δ₀ + α·sign(∇ₓℓ(x+δ₀))), x+δ clipped to [0,1].

    params: ``alpha`` — step in units of ε (1.25, Wong et al. 2020).
    """

    targeted = True

    def step(self, model, x, y, ctx) -> StepOutput:
        alpha = self.params["alpha"] * self.eps * ctx.warmup
        labels, targeted = self.attack_labels(y, ctx)
        x_adv, grad = fgsm_attack(model, x, labels, self.eps, alpha=alpha, random_init=True, gen=ctx.gen,
                                  return_grad=True, clamp_in_graph=self.clamp_in_graph, targeted=targeted)
        return ce_step(model, x_adv, y, grad)
