"""Training methods: one per file, each citing its paper and registering itself with ``@register``
(fastadv.method_registry), which declares its parameters. Importing this package registers them all."""
from __future__ import annotations

from ..errors import unknown_choice
from ..method_registry import REGISTRY, Param, register
from . import cure, elle, elle_a, fgsm, fgsm_rs, free, gradalign_fd, llr, nfgsm, pgd, standard  # noqa: F401 (register)
from .base import Method, StepContext, StepOutput
from .gradalign import GradAlign, default_lambda, grad_align_penalty  # noqa: F401


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


__all__ = ["REGISTRY", "Param", "register", "build_method", "Method", "StepContext", "StepOutput", "default_lambda",
           "grad_align_penalty"]
