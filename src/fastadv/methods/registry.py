"""The method registry: a training method is one file whose ``SPEC`` declares it as data,

    SPEC = MethodSpec("fgsm", summary="FGSM from zero …", impl="fastadv.methods.fgsm:FGSM",
                      params={"alpha": Param("float", 1.25, "step / ε …", min=0)}, passes=2,
                      styles={"fgsm": ("FGSM", "#d62728")})

and everything else derives from it: the valid ``method.name`` values, the types, ranges and defaults of
its ``train.method.<name>`` section, the JSON schema of params.yaml, the methods reference (docs)
(``fastadv methods``), the workflow's cost estimate (passes) and the figures' labels and colours.

Where specs come from, in this order (a later one may not reuse a name):
  1. every module of the package ``fastadv.methods`` that defines ``SPEC`` (found by listing the
     package, no list of names);
  2. the entry-point group ``fastadv.methods`` of installed distributions: each entry names a
     ``MethodSpec`` (``mymethods.noise:SPEC``), so another package adds methods the CLI, the schema
     and the workflow accept;
  3. :func:`register` at run time (a notebook's or a test's method, with its class).

Torch-free: the workflow validates and plans without torch. The class named by ``impl`` is imported
only when a run builds the method (:func:`method_class`); the built-in method files import torch
lazily (:mod:`fastadv.lazy`) so that reading their ``SPEC`` stays cheap.
"""
from __future__ import annotations

import functools
import importlib
import pkgutil
from dataclasses import dataclass, field
from importlib.metadata import entry_points

from fastadv.config.spec import Spec
from fastadv.errors import FastAdvError, unknown_choice
from fastadv.lazy import import_object

ENTRY_POINT_GROUP = "fastadv.methods"


@dataclass(frozen=True)
class Param:
    """One parameter of a method: ``kind`` int | float | bool | str | choice, its default, what it means
    (with its source), and its range or choices."""

    kind: str
    default: object
    doc: str
    choices: tuple = ()
    optional: bool = False
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False

    def spec(self) -> Spec:
        return Spec(self.kind, tuple(self.choices), self.optional, self.min, self.max, self.min_exclusive)


@dataclass(frozen=True)
class MethodSpec:
    """A training method as data.

    ``impl``: ``"module:Class"`` of its :class:`~fastadv.methods.base.Method` subclass.
    ``passes``: forward+backward passes of the model per training iteration (the workflow's cost
    estimate and scheduling priority); ``passes_param`` names a parameter whose value adds to it
    (PGD: ``steps``). ``labels``: ``(condition, label)`` pairs, the first whose condition holds names the
    run in tables and figures (a condition maps dotted keys of the run's ``method``/``model``/``data`` config to
    values, ``{}`` always holds; a label may name the method's parameters: ``"pgd{steps}"``); else the name.
    ``styles``: display name and colour of each label in figures.
    ``data_parallel``: the method may train on several ranks (fastadv.training.distributed): its loss is a
    mean of per-example terms, so DDP's average of the shards' gradients is the whole batch's — nothing is
    computed from the batch as a whole (a batch-mean gradient's size, an adaptive λ) and no gradient is
    added outside ``backward()``. Off unless declared.
    ``double_backprop``: the loss differentiates an input gradient with respect to the weights (an input
    gradient taken with ``create_graph``: GradAlign, CURE, LLR), so every layer's backward must itself be
    differentiable; torch's SyncBatchNorm's is not (``runtime.sync_batchnorm`` is refused with it).
    """

    name: str
    summary: str
    impl: str
    params: dict = field(default_factory=dict)
    passes: float = 2.0
    passes_param: str | None = None
    labels: tuple = ()
    styles: dict = field(default_factory=dict)
    data_parallel: bool = False
    double_backprop: bool = False

    def __post_init__(self):
        if not self.name.isidentifier():
            raise FastAdvError(f"method name {self.name!r} is not an identifier (it becomes a config key)")
        if self.passes_param is not None and self.passes_param not in self.params:
            raise FastAdvError(f"method {self.name!r}: passes_param {self.passes_param!r} is not one of its "
                               f"parameters; valid: {', '.join(self.params) or 'none'}")

    def passes_per_iteration(self, method_cfg: dict) -> float:
        extra = method_cfg[self.name][self.passes_param] if self.passes_param else 0
        return self.passes + extra

    def label(self, method_cfg: dict, model_cfg: dict | None = None, data_cfg: dict | None = None) -> str:
        cfg = {"method": method_cfg, "model": model_cfg or {}, "data": data_cfg or {}}
        for condition, label in self.labels:
            if all(_dotted(cfg, k) == v for k, v in condition.items()):
                return label.format(**method_cfg.get(self.name, {}))
        return self.name


def _dotted(cfg: dict, key: str):
    for part in key.split("."):
        cfg = cfg.get(part) if isinstance(cfg, dict) else None
    return cfg


_RUNTIME: dict[str, tuple[MethodSpec, type | None]] = {}  # registered at run time: name → (spec, class)


def _builtin_specs() -> list[MethodSpec]:
    import fastadv.methods as package

    found = []
    for mod in pkgutil.iter_modules(package.__path__):
        spec = getattr(importlib.import_module(f"{package.__name__}.{mod.name}"), "SPEC", None)
        if isinstance(spec, MethodSpec):
            found.append(spec)
    return found


def _entry_point_specs() -> list[tuple[str, MethodSpec]]:
    found = []
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        try:
            spec = ep.load()
        except Exception as e:  # a broken plug-in: say which one, keep the cause
            raise FastAdvError(f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} failed to "
                               f"load: {type(e).__name__}: {e}") from e
        if not isinstance(spec, MethodSpec):
            raise FastAdvError(f"entry point {ep.name!r} = {ep.value!r} of group {ENTRY_POINT_GROUP!r} is a "
                               f"{type(spec).__name__}, not a fastadv.methods.registry.MethodSpec")
        found.append((f"entry point {ep.value!r}", spec))
    return found


@functools.lru_cache(maxsize=1)
def _installed() -> dict[str, MethodSpec]:
    out: dict[str, MethodSpec] = {}
    for origin, spec in [("fastadv.methods", s) for s in _builtin_specs()] + _entry_point_specs():
        if spec.name in out:
            raise FastAdvError(f"method {spec.name!r} of {origin} is declared twice; rename one of them")
        out[spec.name] = spec
    return out


def specs() -> dict[str, MethodSpec]:
    """Every method's spec: the package's, the installed entry points', those registered at run time."""
    return {**_installed(), **{name: spec for name, (spec, _) in _RUNTIME.items()}}


def spec_of(name: str) -> MethodSpec:
    found = specs()
    if name not in found:
        raise unknown_choice("method", name, found)
    return found[name]


def method_class(name: str) -> type:
    """The class that implements method ``name``, imported now (this is where torch is loaded)."""
    if name in _RUNTIME and _RUNTIME[name][1] is not None:
        return _RUNTIME[name][1]
    return import_object(spec_of(name).impl)


def register(spec: MethodSpec, cls: type | None = None) -> MethodSpec:
    """Make a method available at run time (a notebook's or a test's); ``cls`` instead of ``spec.impl``."""
    if spec.name in _installed():
        raise FastAdvError(f"method {spec.name!r} exists already; choose another name")
    _RUNTIME[spec.name] = (spec, cls)
    return spec


def unregister(name: str) -> None:
    """Forget a method registered at run time (tests)."""
    _RUNTIME.pop(name, None)


def method_label(method_cfg: dict, model_cfg: dict | None = None, data_cfg: dict | None = None) -> str:
    """The name that tells a run apart in tables and figures (the variant labels of params.yaml); a run whose training
    attack aims at random targets (``method.objective: random_target``) is ``<label>_targeted``."""
    label = spec_of(method_cfg["name"]).label(method_cfg, model_cfg, data_cfg)
    return label + "_targeted" if method_cfg.get("objective", "untargeted") == "random_target" else label


def label_style(label: str) -> tuple[str, str]:
    """(display name, colour) of a method label in figures: a label extending a styled one (``gradalign_l0.1``)
    is drawn in its colour, named with the extension (``FGSM+GradAlign (l0.1)``); unknown labels in black."""
    for spec in specs().values():
        if label in spec.styles:
            return tuple(spec.styles[label])
    for spec in specs().values():
        for base, (name, colour) in spec.styles.items():
            if label.startswith(base + "_"):
                return f"{name} ({label[len(base) + 1:]})", colour
    return label, "#000000"


def methods_table() -> str:
    """The methods reference's table (docs/reference/methods.md, ``fastadv methods``): name, what it is, parameters with defaults."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def value(v) -> str:  # as params.yaml writes it
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["| name | what | parameters (default: meaning) |", "|---|---|---|"]
    for name, d in sorted(specs().items()):
        params = "<br>".join(f"`{k}` = {value(p.default)}: {cell(p.doc)}" for k, p in d.params.items()) or "—"
        lines.append(f"| `{name}` | {cell(d.summary)} | {params} |")
    return "\n".join(lines)
