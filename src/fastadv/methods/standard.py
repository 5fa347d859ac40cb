from .base import Method, StepOutput, ce_step


class Standard(Method):
    """Standard (non-adversarial) training: cross-entropy on clean inputs."""

    def step(self, model, x, y, ctx) -> StepOutput:
        return ce_step(model, x, y)
