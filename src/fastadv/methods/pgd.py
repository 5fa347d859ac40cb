from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput, ce_step, clean_forward
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
pgd_perturbation = deferred("fastadv.attacks", "pgd_perturbation")
uniform_delta = deferred("fastadv.attacks.fgsm", "uniform_delta")

SPEC = MethodSpec(
    "pgd",
    summary="PGD-k AT (Madry et al. 2018); PGD-2 and PGD-10 are variants",
    impl="fastadv.methods.pgd:PGD",
    params={
        "steps": Param("int", 10, "k (paper: PGD-2 and PGD-10)", min=1),
        "alpha": Param("float", 0.2, "step / ε: PGD-10 ε/5, PGD-2 ε/2 (scripts)", min=0, min_exclusive=True),
        "random_init": Param("bool", False, "the scripts use --attack_init=zero", ),
    },
    passes=1,
    passes_param="steps",
    labels=(({}, "pgd{steps}"),),
    styles={"pgd2": ("PGD-2", "#1f77b4"), "pgd10": ("PGD-10", "#9467bd")},
    data_parallel=True,
)


class PGD(Method):
    """PGD-k adversarial training (Madry et al., ICLR 2018).

    params: ``steps`` k; ``alpha`` step in units of ε (paper scripts: PGD-2 α = ε/2,
    PGD-10 α = ε/5); ``random_init`` (paper scripts: zero init). Under SVHN's
    warm-up ε itself grows linearly while the step stays α·ε (GradAlign code, train.py L130-136).
    """

    targeted = True

    def step(self, model, x, y, ctx) -> StepOutput:
        eps = self.eps * ctx.warmup  # the warm-up ramps ε only; the step stays α·ε (train.py L130-136)
        p = self.params
        labels, targeted = self.attack_labels(y, ctx)
        delta0 = uniform_delta(x, eps, ctx.gen) if p["random_init"] else torch.zeros_like(x)
        delta = pgd_perturbation(model, x, labels, eps, p["alpha"] * self.eps, p["steps"], delta0, self.clamp_in_graph,
                                 targeted)
        if self.extra_clean_forward:
            clean_forward(model, x)
        return ce_step(model, (x + delta).clamp(0, 1), y)
