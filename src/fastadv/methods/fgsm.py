from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
fgsm_attack = deferred("fastadv.attacks", "fgsm_attack")
input_grad = deferred("fastadv.attacks.grad", "input_grad")

SPEC = MethodSpec(
    "fgsm",
    summary="FGSM from zero: δ = ε·sign(∇ₓℓ(x)) (Goodfellow et al. 2015); or from the previous batch's δ",
    impl="fastadv.methods.fgsm:FGSM",
    params={
        "alpha": Param("float", 1.25, "step / ε; zero init clips any α ≥ 1 to ε (the scripts pass 1.25)", min=0, min_exclusive=True),
        "start": Param("choice", "zero", "zero: δ₀ = 0 every batch (the GradAlign code's --attack_init=zero, its "
                                         "CIFAR-10 FGSM); carried: δ₀ = the previous batch's δ (Wong et al.'s "
                                         "ImageNet code with random_init false: global_noise_data)",
                       choices=("zero", "carried")),
    },
    passes=2,
    styles={"fgsm": ("FGSM", "#d62728")},
    labels=(({"method.fgsm.start": "carried"}, "fgsm_carried"),),
    data_parallel=True,
)


class FGSM(Method):
    """FGSM adversarial training with zero init (Goodfellow et al., ICLR 2015), as run in the
    GradAlign paper (Andriushchenko & Flammarion, NeurIPS 2020, Fig. 1: ``--attack_init=zero``):
    δ = ε·sign(∇ₓℓ(x)) (α ≥ 1 is clipped back to the ε-ball), loss ℓ(x + δ).

    ``start: carried`` is the "FGSM" of Wong et al.'s ImageNet code (main_fast.py with ``random_init: false``):
    one noise buffer carried from batch to batch (Free AT with m = 1, Shafahi et al. 2019): the gradient is taken
    at clip₀₁(x + δ) with the clip in the graph, δ ← clip_[-ε,ε](δ + α·sign(∇)) — not projected to the box, the
    input is clipped where used — and the loss is ℓ(clip₀₁(x + δ)). The buffer starts at zero, and again when the
    input size changes (their phases are separate processes), and is kept in the resumable state. Under data
    parallelism each rank carries its shard's rows: the single process's rows while batches are whole; a short last
    batch (``drop_last: false``) reuses each rank's first rows instead of the buffer's first — another, equally
    arbitrary, pairing of carried noise with images (theirs pairs a row with whichever image comes next).

    params: ``alpha`` — step in units of ε (1.25 in the GradAlign scripts and Wong et al.'s ImageNet configs);
    ``start``.
    """

    targeted = True

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self.noise: torch.Tensor | None = None

    def step(self, model, x, y, ctx) -> StepOutput:
        alpha = self.params["alpha"] * self.eps * ctx.warmup
        labels, targeted = self.attack_labels(y, ctx)
        if self.params["start"] == "carried":
            return self._carried_step(model, x, y, alpha, labels, targeted)
        x_adv, grad = fgsm_attack(model, x, labels, self.eps, alpha=alpha, random_init=False, gen=ctx.gen,
                                  return_grad=True, clamp_in_graph=self.clamp_in_graph, targeted=targeted)
        return ce_step(model, x_adv, y, grad)

    def _carried_step(self, model, x, y, alpha: float, labels, targeted: bool) -> StepOutput:
        n = len(x)
        if self.noise is None or len(self.noise) < n or self.noise.shape[1:] != x.shape[1:]:
            self.noise = torch.zeros_like(x)
        grad, _ = input_grad(model, x, labels, self.noise[:n], clamp=True, targeted=targeted)
        self.noise[:n] = (self.noise[:n] + alpha * grad.sign()).clamp(-self.eps, self.eps)
        return ce_step(model, (x + self.noise[:n]).clamp(0, 1), y, grad)

    def state_dict(self) -> dict:
        return {"noise": self.noise}

    def load_state_dict(self, state: dict) -> None:
        self.noise = state.get("noise")
