from __future__ import annotations

from dataclasses import dataclass

from fastadv.lazy import deferred, lazy

# imported at the first training step, so that the method files import without torch (fastadv.lazy)
torch = lazy("torch")
F = lazy("torch.nn.functional")
fgsm_point = deferred("fastadv.attacks.fgsm", "fgsm_point")
random_wrong_classes = deferred("fastadv.attacks.targeted", "random_wrong_classes")
loss_and_input_grad = deferred("fastadv.attacks.grad", "loss_and_input_grad")


@dataclass
class StepContext:
    """What a method may use besides the batch: the step's RNG and the warm-up factor w ∈ [0,1]
    (SVHN: ε of PGD / step α of FGSM grow linearly over the first epochs; 1 elsewhere)."""

    gen: torch.Generator
    warmup: float = 1.0


@dataclass
class StepOutput:
    loss: torch.Tensor     # what is backpropagated
    logits: torch.Tensor   # on the training inputs actually used (for train accuracy)
    reg: torch.Tensor | None = None  # regulariser part of the loss (already weighted), if any
    inputs: torch.Tensor | None = None  # the training inputs x + δ (for the mean ‖δ‖₂ statistic)
    input_grad: torch.Tensor | None = None  # ∇ₓ of the batch-mean loss the attack used, if any


class Method:
    """A training method: the loss of one batch. ``eps`` is absolute ([0,1] pixel units).

    ``replay``: how many consecutive steps reuse one batch (Free AT's m; 1 otherwise).
    """

    replay = 1
    # Switches of the GradAlign code's behaviour (train.method.*; set by build_method):
    clamp_in_graph = False       # training attacks take gradients through clip₀₁(x + δ)
    extra_clean_forward = False  # standard / PGD training: one more clean train-mode forward per step
    # The training attack's objective (train.method.objective; set by build_method): untargeted, or random_target
    # where the method's step asks attack_labels for its labels (targeted = True: those methods only).
    objective = "untargeted"
    targeted = False
    num_classes = 0

    def __init__(self, eps: float, params: dict, dataset: str):
        self.eps = eps
        self.params = params
        self.dataset = dataset

    def step(self, model, x, y, ctx: StepContext) -> StepOutput:
        raise NotImplementedError

    def attack_labels(self, y, ctx: StepContext):
        """(the labels the training attack uses, whether it moves toward them): ``y`` itself (untargeted), or per
        example a uniformly drawn wrong class (``random_target``: targeted adversarial training, as Kannan et al.
        2018 and Xie et al. 2019 train on ImageNet; the GradAlign rebuttal's targeted AT at 16/255), drawn from the
        step's generator. The training loss stays the cross-entropy to ``y``."""
        if self.objective == "untargeted":
            return y, False
        return random_wrong_classes(y, self.num_classes, ctx.gen), True

    def effective_params(self) -> dict:
        """The parameters the method trains with: its config block, a null resolved to the value used."""
        return dict(self.params)

    def after_backward(self) -> None:
        """Called after loss.backward() and before optimizer.step() (Free AT updates δ here)."""

    def state_dict(self) -> dict:
        return {}

    def load_state_dict(self, state: dict) -> None:
        pass


def clean_forward(model, x) -> None:
    """A clean forward pass in the model's mode whose only effect is on batch-norm running statistics:
    the GradAlign code's extra forward/backward for monitoring ∇ₓℓ(x) in standard and PGD training
    (train.py, ``get_input_grad(…, delta_init='none')``)."""
    with torch.no_grad():
        model(x)


def ce_step(model, x_train, y, input_grad: torch.Tensor | None = None) -> StepOutput:
    logits = model(x_train)
    return StepOutput(F.cross_entropy(logits, y), logits, inputs=x_train, input_grad=input_grad)


def regularised_step(model, x, y, base: str, fgsm_alpha: float, eps: float, penalty) -> StepOutput:
    """Base loss + a penalty built from the clean forward: ``penalty(loss_x, grad_x)`` gets the
    (differentiable) clean per-example losses and input gradient. ``base``:
    ``clean`` = mean ℓ(x); ``fgsm`` = ℓ at the zero-init FGSM point of step ``fgsm_alpha`` (absolute),
    whose gradient is the same ∇ₓℓ(x), so nothing is computed twice (CURE, LLR)."""
    logits, loss_x, grad_x = loss_and_input_grad(model, x, y)
    reg = penalty(loss_x, grad_x)
    inputs = x
    if base == "fgsm":
        inputs = fgsm_point(x, grad_x, eps, fgsm_alpha)
        logits = model(inputs)
        loss = F.cross_entropy(logits, y)
    else:
        loss = loss_x.mean()
    return StepOutput(loss + reg, logits, reg.detach(), inputs, grad_x.detach() / len(y))
