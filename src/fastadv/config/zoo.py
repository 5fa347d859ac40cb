"""``zoo:`` of params.yaml: the published models the zoo table evaluates (``results/<scale>/zoo.md``).

Each entry names a model, the code base that wrote its file (``source``: a ``fastadv import --from`` choice),
the file (a path under ``dir``; for RobustBench the model's name, found at ``<dir>/<dataset>/Linf/<name>.pt``),
its dataset and training ε, and how to get the file when it is absent. The values published for a file are in the
store of published numbers (fastadv.paper.reference.load_checkpoints), under the entry's name. A scale may override
``dir`` and ``evaluate`` and replace ``models``. Torch-free."""
from __future__ import annotations

from pathlib import Path

from fastadv.config.params import validate_section
from fastadv.data.registry import DATASETS
from fastadv.config.spec import _STR, _choice, _float
from fastadv.errors import FastAdvError

SOURCES = ("official", "wong", "robustbench")
ENTRY = {"name": _STR, "source": _choice(*SOURCES), "file": _STR, "dataset": _choice(*DATASETS),
         "eps": _float(min=0, max=128, min_exclusive=True), "which": _choice("last", "best"), "how": _STR}
ZOO_KEYS = ("dir", "evaluate", "models")


def _mapping(d, keys, where: str) -> dict:
    if not isinstance(d, dict):
        raise FastAdvError(f"{where} must be a mapping, got {d!r}")
    unknown = [k for k in d if k not in keys]
    if unknown:
        raise FastAdvError(f"unknown config key {where}.{unknown[0]}; valid: {', '.join(keys)}")
    return d


def validate_entry(e, where: str) -> dict:
    _mapping(e, tuple(ENTRY), where)
    missing = [k for k in ENTRY if k not in e]
    if missing:
        raise FastAdvError(f"missing config key(s) in {where}: {', '.join(missing)}")
    return {k: spec.check(f"{where}.{k}", e[k]) for k, spec in ENTRY.items()}


def validate_zoo(zoo, where: str = "zoo", partial: bool = False) -> dict:
    """The ``zoo`` section (``partial``: a scale's override, keys may be missing)."""
    zoo = _mapping(zoo or {}, ZOO_KEYS, where)
    if not partial and "dir" not in zoo:
        raise FastAdvError(f"missing config key(s) in {where}: dir")
    out = {}
    if "dir" in zoo:
        out["dir"] = _STR.check(f"{where}.dir", zoo["dir"])
    out["evaluate"] = validate_section(zoo.get("evaluate") or {}, "evaluate", partial=True, where=f"{where}.evaluate")
    if "models" in zoo or not partial:
        models = zoo.get("models") or []
        if not isinstance(models, list):
            raise FastAdvError(f"{where}.models must be a list of models, got {models!r}")
        out["models"] = [validate_entry(e, f"{where}.models[{i}]") for i, e in enumerate(models)]
        names = [m["name"] for m in out["models"]]
        if len(set(names)) != len(names):
            raise FastAdvError(f"{where}.models: names must be unique; got {names}")
    return out


def listed_path(entry: dict, zoo_dir: str | Path) -> Path:
    """Where a listed model's file is: RobustBench's model_dir layout ``<dir>/<dataset>/Linf/<name>.pt`` for
    robustbench entries (robustbench.utils.load_model), else ``<dir>/<file>``."""
    if entry["source"] == "robustbench":
        return Path(zoo_dir) / entry["dataset"] / "Linf" / f"{entry['file']}.pt"
    return Path(zoo_dir) / entry["file"]


def json_schema(spec_schema, eval_schema: dict) -> dict:
    """The JSON schema of ``zoo`` (and of a scale's override: the same, nothing required)."""
    entry = {"type": "object", "additionalProperties": False, "required": list(ENTRY),
             "properties": {k: spec_schema(v) for k, v in ENTRY.items()}}
    return {"type": ["object", "null"], "additionalProperties": False,
            "properties": {"dir": {"type": "string"}, "evaluate": eval_schema,
                           "models": {"type": ["array", "null"], "items": entry}}}
