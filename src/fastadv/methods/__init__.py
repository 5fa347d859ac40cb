"""Training methods: one per file, each citing its paper and declaring itself as data in ``SPEC``
(fastadv.methods.registry: name, parameters, cost, figure labels, and ``impl``, its class). A file added
here is found without being listed; another installed package adds methods through the entry-point group
``fastadv.methods``. Torch-free to import: the classes load torch at their first step (fastadv.lazy)."""
from __future__ import annotations

from types import SimpleNamespace
from typing import Mapping

from fastadv.data.registry import dataset_spec
from fastadv.errors import FastAdvError
from fastadv.methods.base import Method, StepContext, StepOutput
from fastadv.methods.gradalign import default_lambda, grad_align_penalty
from fastadv.methods.registry import MethodSpec, Param, method_class, register, specs
from fastadv.units import eps_absolute


def build_method(method_cfg, dataset: str) -> Method:
    """From the ``train.method`` section: a :class:`fastadv.config.run_config.MethodConfig`, or a mapping
    written as in params files (ε in units of 1/255; a parity switch left out is off)."""
    m = method_cfg
    if isinstance(m, Mapping):
        m = SimpleNamespace(name=m["name"], eps_abs=eps_absolute(m["eps"]), params=m.get(m["name"], {}),
                            clamp_in_graph=m.get("clamp_in_graph", False),
                            extra_clean_forward=m.get("extra_clean_forward", False),
                            objective=m.get("objective", "untargeted"))
    method = method_class(m.name)(m.eps_abs, m.params, dataset)
    method.clamp_in_graph = m.clamp_in_graph
    method.extra_clean_forward = m.extra_clean_forward
    if m.objective != "untargeted":
        if not method.targeted:
            able = ", ".join(n for n in sorted(specs()) if getattr(method_class(n), "targeted", False))
            raise FastAdvError(f"method.objective {m.objective} for method {m.name!r}: its training attack is "
                               f"untargeted only; valid with {m.objective}: {able}")
        method.objective, method.num_classes = m.objective, dataset_spec(dataset).num_classes
    return method


__all__ = ["MethodSpec", "Param", "register", "specs", "method_class", "build_method", "Method", "StepContext",
           "StepOutput", "default_lambda", "grad_align_penalty"]


def effective_train_config(cfg: dict) -> dict:
    """A resolved train config as the run uses it (``fastadv config``): the chosen method's block only, with the
    values it takes (λ of GradAlign from ε, …) and its switches; the other methods' blocks left out."""
    m = cfg["method"]
    used = build_method(m, cfg["data"]["dataset"]).effective_params()
    switches = {k: v for k, v in m.items() if not isinstance(v, dict) and k not in ("name", "eps")}
    return {**cfg, "method": {"name": m["name"], "eps": m["eps"], **({m["name"]: used} if used else {}), **switches}}
