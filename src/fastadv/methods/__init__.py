"""Training methods: one per file, each citing its paper and declaring itself as data in ``SPEC``
(fastadv.methods.registry: name, parameters, cost, figure labels, and ``impl``, its class). A file added
here is found without being listed; another installed package adds methods through the entry-point group
``fastadv.methods``. Torch-free to import: the classes load torch at their first step (fastadv.lazy)."""
from __future__ import annotations

from fastadv.methods.base import Method, StepContext, StepOutput
from fastadv.methods.gradalign import default_lambda, grad_align_penalty
from fastadv.methods.registry import MethodSpec, Param, method_class, register, specs


def build_method(method_cfg: dict, dataset: str) -> Method:
    """From the ``train.method`` config section (ε there is in /255)."""
    name = method_cfg["name"]
    method = method_class(name)(method_cfg["eps"] / 255.0, method_cfg.get(name, {}), dataset)
    method.clamp_in_graph = method_cfg.get("clamp_in_graph", False)
    method.extra_clean_forward = method_cfg.get("extra_clean_forward", False)
    return method


__all__ = ["MethodSpec", "Param", "register", "specs", "method_class", "build_method", "Method", "StepContext",
           "StepOutput", "default_lambda", "grad_align_penalty"]
