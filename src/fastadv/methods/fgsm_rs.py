from ..attacks import fgsm_attack
from .base import Method, StepOutput, ce_step
from ..method_registry import Param, register


@register("fgsm_rs", summary="FGSM from δ₀ ~ U[−ε,ε] (Wong et al. 2020)", params={
    "alpha": Param("float", 1.25, "step / ε after the uniform start (Wong et al. 2020)", min=0, min_exclusive=True),
})
class FGSMRS(Method):
    """FGSM with random start (Wong, Rice & Kolter, "Fast is better than free", ICLR 2020):
    δ₀ ~ U[-ε,ε]^d, δ = Π_ε(δ₀ + α·sign(∇ₓℓ(x+δ₀))), x+δ clipped to [0,1].

    params: ``alpha`` — step in units of ε (1.25, Wong et al. 2020).
    """

    def step(self, model, x, y, ctx) -> StepOutput:
        alpha = self.params["alpha"] * self.eps * ctx.warmup
        x_adv, grad = fgsm_attack(model, x, y, self.eps, alpha=alpha, random_init=True, gen=ctx.gen,
                                  return_grad=True, clamp_in_graph=self.clamp_in_graph)
        return ce_step(model, x_adv, y, grad)
