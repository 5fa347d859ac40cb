"""One config, read from ``params.yaml``: loading, scales, ``--set`` overrides, validation.

The values (and the comments saying what each means and where it comes from)
live once, in ``params.yaml`` — except each training method's parameters, which its
own file declares (fastadv.methods.registry; params.yaml may override them). The keys and their
types are declared once, in fastadv.config.sections; this module checks a params file against them:
every key must be present, no unknown key is accepted, and each value is type- and range-checked, so a
typo is an error naming the key and the valid ones.
"""
from __future__ import annotations

import copy
from pathlib import Path

import yaml

from fastadv.methods import registry as method_registry
from fastadv.errors import FastAdvError
from fastadv.config.sections import TRAIN_SECTIONS, EvalSettings, Resources
from fastadv.data.registry import FOLDER_DATASETS

# Sections of params.yaml; `train`/`evaluate` hold run settings, the rest belong
# to the workflow (scales of the study, experiments of the paper).
TOP_LEVEL_SECTIONS = ("train", "evaluate", "variants", "experiments", "resources", "scales", "zoo")
# Top-level settings of the workflow: the scale the unscaled targets build, the CPU override.
TOP_LEVEL_SCALARS = ("scale", "allow_cpu")


def method_defaults() -> dict:
    """Every method's declared parameter defaults: what a params file leaves out of ``train.method``."""
    return {name: {k: p.default for k, p in d.params.items()} for name, d in method_registry.specs().items()
            if d.params}


def schema(section: str) -> dict:
    """The types of a ``train``/``evaluate``/``resources`` section, read from the dataclasses that declare their
    keys (fastadv.config.sections; train's methods as registered now)."""
    if section == "train":
        return {name: cls.schema() for name, cls in TRAIN_SECTIONS.items()}
    return {"evaluate": EvalSettings, "resources": Resources}[section].schema()


SECTIONS = ("train", "evaluate", "resources")


def _validate(section: dict, schema: dict, prefix: str, partial: bool) -> dict:
    if not isinstance(section, dict):
        raise FastAdvError(f"config section {prefix} must be a mapping, got {section!r}")
    out = {}
    for key, value in section.items():
        full = f"{prefix}.{key}"
        if key not in schema:
            raise FastAdvError(f"unknown config key {full!r}; valid keys in {prefix}: {', '.join(schema)}")
        spec = schema[key]
        out[key] = _validate(value, spec, full, partial) if isinstance(spec, dict) else spec.check(full, value)
    if not partial:
        missing = [k for k in schema if k not in section]
        if missing:
            raise FastAdvError(f"missing config key(s) in {prefix}: {', '.join(missing)}")
    return out


def validate_section(cfg: dict, section: str, partial: bool = False, where: str | None = None) -> dict:
    """Type-check a ``train``/``evaluate``/``resources`` section (``partial``: an override, keys may be
    missing); errors name the key by its dotted path in the params file, ``where`` (default: ``section``)."""
    if section == "train" and not partial and isinstance(cfg, dict):  # methods' parameters default to their declarations
        cfg = {**cfg, "method": deep_merge(method_defaults(), cfg.get("method") or {})}
    out = _validate(cfg, schema(section), where or section, partial)
    if section == "train" and not partial:
        _check_lr_points(out["optim"], f"{where or section}.optim")
        _check_phases(out, where or section)
        _check_sync_batchnorm(out, where or section)
    return out


def _check_sync_batchnorm(cfg: dict, where: str) -> None:
    """SyncBatchNorm's backward (torch 2.14: ``batch_norm_backward_elemt``, no derivative formula) cannot be
    differentiated again, so a method whose loss differentiates an input gradient would fail at its first
    data-parallel step, deep inside autograd: refused here, by name."""
    name = cfg["method"]["name"]
    if cfg["runtime"]["sync_batchnorm"] and method_registry.spec_of(name).double_backprop:
        ok = sorted(n for n, s in method_registry.specs().items() if not s.double_backprop)
        raise FastAdvError(f"{where}.runtime.sync_batchnorm: true cannot train {where}.method.name {name!r} (it "
                           f"differentiates an input gradient, and SyncBatchNorm's backward is not differentiable); "
                           f"set runtime.sync_batchnorm: false, or a method of {', '.join(ok)}")


def _check_phases(cfg: dict, where: str) -> None:
    """``data.phases`` replace ``optim.batch_size`` (one of the two is null), end at increasing epochs, the last
    at ``optim.epochs``, and exist for image-folder datasets only (crops of the original images)."""
    phases, bs, epochs = cfg["data"]["phases"], cfg["optim"]["batch_size"], cfg["optim"]["epochs"]
    if phases is None:
        if bs is None:
            raise FastAdvError(f"{where}.optim.batch_size must not be null without {where}.data.phases")
        return
    if bs is not None:
        raise FastAdvError(f"{where}.optim.batch_size {bs} and {where}.data.phases both set the batch size; set "
                           f"{where}.optim.batch_size: null (each phase has its batch_size)")
    if cfg["data"]["dataset"] not in FOLDER_DATASETS:
        raise FastAdvError(f"{where}.data.phases crop image-folder datasets ({', '.join(FOLDER_DATASETS)}); "
                           f"{cfg['data']['dataset']!r} has none")
    ends = [ph["epochs"] for ph in phases]
    if any(b <= a for a, b in zip(ends, ends[1:])) or ends[-1] != epochs:
        raise FastAdvError(f"{where}.data.phases end at epochs {ends}: they must increase and the last must be "
                           f"{where}.optim.epochs ({epochs})")


def _check_lr_points(optim: dict, where: str) -> None:
    """``interpolated`` needs (epoch, lr) points: two lists of one length, epochs not decreasing."""
    if optim["lr_schedule"] != "interpolated":
        return
    epochs, values = optim["lr_epochs"], optim["lr_values"]
    if epochs is None or values is None or len(epochs) != len(values):
        raise FastAdvError(f"{where}.lr_schedule interpolated needs {where}.lr_epochs and {where}.lr_values, two "
                           f"lists of one length; got {epochs!r} and {values!r}")
    if any(b < a for a, b in zip(epochs, epochs[1:])):
        raise FastAdvError(f"{where}.lr_epochs must not decrease; got {epochs!r}")


def validate_train(cfg: dict, partial: bool = False) -> dict:
    return validate_section(cfg, "train", partial)


def deep_merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for k, v in override.items():
        if isinstance(v, dict) and isinstance(out.get(k), dict):
            out[k] = deep_merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def parse_scalar(raw: str):
    """A command-line value as YAML (``2`` an int, ``null`` None, ``true`` a bool, ``3e-1`` a float);
    nothing is ever evaluated as code."""
    try:
        value = yaml.safe_load(raw) if raw.strip() else raw
    except yaml.YAMLError:
        value = raw
    if isinstance(value, str):  # YAML 1.1 reads 3e-1 as a string; users mean the number
        try:
            value = float(value)
        except ValueError:
            pass
    return value


def parse_set(assignment: str, section: str = "train") -> dict:
    """Turn ``method.pgd.steps=2`` into ``{"method": {"pgd": {"steps": 2}}}``.

    The value is parsed as YAML (so ``2`` is an int, ``null`` is None,
    ``true`` a bool); nothing is ever evaluated as code.
    """
    if "=" not in assignment:
        raise FastAdvError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    key = key.strip()
    if key.startswith(section + "."):
        key = key[len(section) + 1:]
    value = parse_scalar(raw)
    node: dict = {}
    cur = node
    parts = key.split(".")
    for p in parts[:-1]:
        cur[p] = {}
        cur = cur[p]
    cur[parts[-1]] = value
    return node


def default_params() -> Path:
    """``params.yaml`` of the working directory (the repository's, the one a user edits) or, outside a
    checkout, the copy shipped in the package (src/fastadv/params.yaml links to the repository's)."""
    here = Path("params.yaml")
    return here if here.is_file() else packaged_params()


def packaged_params() -> Path:
    """The params.yaml shipped in the package: fastadv's own defaults, whatever the working directory holds."""
    from importlib import resources

    return Path(str(resources.files("fastadv").joinpath("params.yaml")))


def read_params(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FastAdvError(f"config file {str(path)!r} not found")
    try:
        doc = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise FastAdvError(f"config file {str(path)!r} is not valid YAML: {str(e).splitlines()[0]}") from None
    if not isinstance(doc, dict):
        raise FastAdvError(f"config file {str(path)!r} must hold a mapping of sections")
    valid = TOP_LEVEL_SECTIONS + TOP_LEVEL_SCALARS
    unknown = [k for k in doc if k not in valid]
    if unknown:
        raise FastAdvError(f"unknown config section {unknown[0]!r} in {path}; valid: {', '.join(valid)}")
    for section in SECTIONS:
        if section not in doc:
            raise FastAdvError(f"config file {str(path)!r} has no {section!r} section")
    return doc


def config_diff(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two nested configs."""
    out = []
    for k in sorted(set(a) | set(b)):
        key = f"{prefix}{k}"
        va, vb = a.get(k, "<missing>"), b.get(k, "<missing>")
        if isinstance(va, dict) and isinstance(vb, dict):
            out += config_diff(va, vb, key + ".")
        elif va != vb:
            out.append(f"{key}: {va!r} != {vb!r}")
    return out
