"""Training-method registry: one method per file, each citing its paper."""
from __future__ import annotations

from ..errors import unknown_choice
from .base import Method, StepContext, StepOutput
from .cure import CURE
from .elle import ELLE
from .elle_a import ELLEA
from .fgsm import FGSM
from .fgsm_rs import FGSMRS
from .free import Free
from .gradalign import GradAlign, default_lambda, grad_align_penalty
from .gradalign_fd import GradAlignFD
from .llr import LLR
from .nfgsm import NFGSM
from .pgd import PGD
from .standard import Standard

REGISTRY = {
    "standard": Standard,
    "fgsm": FGSM,
    "fgsm_rs": FGSMRS,
    "gradalign": GradAlign,
    "gradalign_fd": GradAlignFD,
    "nfgsm": NFGSM,
    "elle": ELLE,
    "elle_a": ELLEA,
    "cure": CURE,
    "llr": LLR,
    "pgd": PGD,
    "free": Free,
}


def build_method(method_cfg: dict, dataset: str) -> Method:
    """From the ``train.method`` config section (ε there is in /255)."""
    name = method_cfg["name"]
    if name not in REGISTRY:
        raise unknown_choice("method", name, REGISTRY)
    params = method_cfg.get(name, {})
    method = REGISTRY[name](method_cfg["eps"] / 255.0, params, dataset)
    method.clamp_in_graph = method_cfg.get("clamp_in_graph", False)
    method.extra_clean_forward = method_cfg.get("extra_clean_forward", False)
    return method


__all__ = ["REGISTRY", "build_method", "Method", "StepContext", "StepOutput", "default_lambda",
           "grad_align_penalty"]
