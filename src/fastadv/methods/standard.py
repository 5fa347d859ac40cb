from fastadv.methods.base import Method, StepOutput, ce_step, clean_forward
from fastadv.methods.registry import MethodSpec


SPEC = MethodSpec(
    "standard",
    summary="clean training (with `extra_clean_forward`, the batch passes batch norm twice, as the GradAlign code)",
    impl="fastadv.methods.standard:Standard",
    passes=1,
    styles={"standard": ("Standard", "#7f7f7f")},
    data_parallel=True,
)


class Standard(Method):
    """Standard (non-adversarial) training: cross-entropy on clean inputs (with ``extra_clean_forward``,
    the batch passes twice through batch norm, as in the GradAlign code)."""

    def step(self, model, x, y, ctx) -> StepOutput:
        if self.extra_clean_forward:
            clean_forward(model, x)
        return ce_step(model, x, y)
