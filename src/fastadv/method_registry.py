"""The method registry: a training method is one file (in fastadv/methods/) whose class carries one decorator,

    @register("fgsm", summary="FGSM from zero …", params={"alpha": Param("float", 1.25, "step / ε …", min=0)})
    class FGSM(Method): ...

and everything else derives from it: the valid ``method.name`` values, the types, ranges and defaults
of its ``train.method.<name>`` section, the JSON schema of params.yaml and the README's methods table
(``fastadv methods``).

Torch-free on purpose: the workflow validates configs without importing torch, so the parameters of
the built-in methods are read from their decorators' source (:func:`declared`, literal values only),
and methods registered at run time (a user's own, a test's) are added to them.
"""
from __future__ import annotations

import ast
import functools
from dataclasses import dataclass, field
from pathlib import Path

from .spec import Spec

REGISTRY: dict[str, type] = {}       # name → class, filled as method modules are imported
_RUNTIME: dict[str, dict] = {}       # name → {"summary": str, "params": {key: Param}}


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
class Declaration:
    summary: str
    params: dict = field(default_factory=dict)


def register(name: str, summary: str, params: dict[str, Param] | None = None):
    """Class decorator: make a :class:`~fastadv.methods.base.Method` available as ``method.name: <name>``."""
    def decorate(cls):
        cls.registered_name = name
        REGISTRY[name] = cls
        _RUNTIME[name] = {"summary": summary, "params": dict(params or {})}
        return cls
    return decorate


def unregister(name: str) -> None:
    """Forget a method registered at run time (tests)."""
    REGISTRY.pop(name, None)
    _RUNTIME.pop(name, None)


def _literal(node: ast.AST):
    if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "Param":
        return Param(*[_literal(a) for a in node.args], **{k.arg: _literal(k.value) for k in node.keywords})
    if isinstance(node, ast.Dict):
        return {_literal(k): _literal(v) for k, v in zip(node.keys, node.values)}
    if isinstance(node, ast.JoinedStr):
        raise ValueError("f-strings are not literal")
    return ast.literal_eval(node)


@functools.lru_cache(maxsize=1)
def _builtin() -> dict[str, Declaration]:
    """The built-in methods' declarations, read from the decorators in this package's method files."""
    out = {}
    for path in sorted((Path(__file__).parent / "methods").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            for dec in getattr(node, "decorator_list", []):
                if isinstance(dec, ast.Call) and getattr(dec.func, "id", None) == "register":
                    kw = {k.arg: _literal(k.value) for k in dec.keywords}
                    out[_literal(dec.args[0])] = Declaration(kw["summary"], kw.get("params", {}))
    return out


def declared() -> dict[str, Declaration]:
    """Every method's declaration: the built-in ones and those registered at run time."""
    out = dict(_builtin())
    out.update({k: Declaration(v["summary"], v["params"]) for k, v in _RUNTIME.items()})
    return out


def methods_table() -> str:
    """The README's methods table (``fastadv methods``): name, what it is, parameters with defaults."""
    def cell(text: str) -> str:
        return text.replace("|", "\\|")

    def value(v) -> str:  # as params.yaml writes it
        return "null" if v is None else str(v).lower() if isinstance(v, bool) else str(v)

    lines = ["| name | what | parameters (default: meaning) |", "|---|---|---|"]
    for name, d in declared().items():
        params = "<br>".join(f"`{k}` = {value(p.default)}: {cell(p.doc)}" for k, p in d.params.items()) or "—"
        lines.append(f"| `{name}` | {cell(d.summary)} | {params} |")
    return "\n".join(lines)
