from fastadv.lazy import deferred
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")
input_grad = deferred("fastadv.attacks.grad", "input_grad")

SPEC = MethodSpec(
    "nfgsm",
    summary="N-FGSM (de Jorge et al. 2022): noise U[−kε,kε], step α from x+η, no ε-ball projection",
    impl="fastadv.methods.nfgsm:NFGSM",
    params={
        "noise": Param("float", 2.0, "k: noise η ~ U[−kε, kε] (paper: 2)", min=0),
        "alpha": Param("float", 1.0, "step / ε from x+η (paper: α = ε)", min=0, min_exclusive=True),
    },
    passes=2,
    labels=(({"model.name": "preact_resnet18_wong"}, "nfgsm_original"),),
    styles={"nfgsm": ("N-FGSM", "#e377c2"), "nfgsm_original": ("N-FGSM (its own setup)", "#f7b6d2")},
    data_parallel=True,
)


class NFGSM(Method):
    """N-FGSM (de Jorge et al., "Make Some Noise: Reliable and Efficient Single-Step Adversarial
    Training", NeurIPS 2022, Alg. 1): η ~ U[-kε, kε]^d, x_adv = clip_[0,1](x + η + α·sign(∇ₓℓ(x+η))),
    with **no projection** onto the ε-ball, so ‖x_adv − x‖∞ can reach (k+1)·ε (then clipped to [0,1]).

    params: ``noise`` — k, the noise radius in units of ε (paper: 2); ``alpha`` — step in units
    of ε (paper: 1, i.e. α = ε).
    """

    def step(self, model, x, y, ctx) -> StepOutput:
        eta = uniform_delta(x, self.params["noise"] * self.eps, ctx.gen)
        # The gradient is taken at the clipped noisy point, as the authors' code does.
        eta = (x + eta).clamp(0, 1) - x
        grad, _ = input_grad(model, x, y, eta)
        x_adv = (x + eta + self.params["alpha"] * self.eps * ctx.warmup * grad.sign()).clamp(0, 1).detach()
        return ce_step(model, x_adv, y, grad)
