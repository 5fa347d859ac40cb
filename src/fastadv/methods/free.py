from __future__ import annotations

from fastadv.lazy import deferred, lazy
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")
F = lazy("torch.nn.functional")
input_grad = deferred("fastadv.attacks.grad", "input_grad")

SPEC = MethodSpec(
    "free",
    summary="Free AT with minibatch replay (Shafahi et al. 2019); 96 epochs, lr_max 0.04 in the scripts",
    impl="fastadv.methods.free:Free",
    params={
        "replay": Param("int", 8, "m, replays of each batch (scripts: 8, with 96 epochs)", min=1),
        "alpha": Param("float", 1.0, "step / ε (scripts: fgsm_alpha 1.0)", min=0, min_exclusive=True),
        "variant": Param("choice", "official", "official: the GradAlign code's second pass at x + δ_new; shafahi: one pass", choices=("official", "shafahi")),
    },
    passes=1,  # one pass per replayed iteration; the replays are counted as iterations
    styles={"free": ("Free AT (m=8)", "#8c564b")},
)


class Free(Method):
    """Free adversarial training (Shafahi et al., "Adversarial Training for Free!", NeurIPS 2019).

    Each batch is replayed m times and δ is kept across replays *and* batches. Two variants
    (``params.variant``):

    * ``shafahi``: Shafahi et al.'s algorithm — one forward/backward per step gives both the
      parameter gradient at x + δ and ∇_δℓ, then δ ← Π_ε(δ + α·sign(∇_δℓ)), x + δ kept in [0,1].
    * ``official``: the GradAlign code (train.py with ``--minibatch_replay``) — a forward/backward at
      clip₀₁(x + δ) for ∇_δℓ only, the δ update, then a second forward/backward at x + δ_new for the
      parameters: two passes per step.

    Paper scripts: m = 8, 96 epochs (= 12 passes over fresh data), lr_max 0.04, α = 1·ε.
    params: ``replay`` m; ``alpha`` step in units of ε; ``variant``.
    """

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self.replay = params["replay"]
        self.delta: torch.Tensor | None = None
        self._pending = None

    def _updated(self, x, delta, grad, warmup) -> torch.Tensor:
        new = (delta + self.params["alpha"] * self.eps * warmup * grad.sign()).clamp(-self.eps, self.eps)
        return (x + new).clamp(0, 1) - x

    def step(self, model, x, y, ctx) -> StepOutput:
        n = len(x)
        if self.delta is None or len(self.delta) < n or self.delta.shape[1:] != x.shape[1:]:
            self.delta = torch.zeros_like(x)
        if self.params["variant"] == "official":
            grad, _ = input_grad(model, x, y, self.delta[:n], clamp=self.clamp_in_graph)
            new = self._updated(x, self.delta[:n], grad, ctx.warmup)
            self.delta[:n] = new
            return ce_step(model, x + new, y, grad)
        delta = self.delta[:n].clone().requires_grad_(True)
        inputs = (x + delta).clamp(0, 1)
        logits = model(inputs)
        self._pending = (x, delta, ctx.warmup)
        return StepOutput(F.cross_entropy(logits, y), logits, inputs=inputs)

    def after_backward(self) -> None:
        if self._pending is None:
            return
        x, delta, warmup = self._pending
        self._pending = None
        with torch.no_grad():
            self.delta[: len(x)] = self._updated(x, delta, delta.grad, warmup)

    def state_dict(self) -> dict:
        return {"delta": self.delta}

    def load_state_dict(self, state: dict) -> None:
        self.delta = state.get("delta")
