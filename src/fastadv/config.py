"""One config, read from ``params.yaml``: loading, scales, ``--set`` overrides, validation.

The values (and the comments saying what each means and where it comes from)
live once, in ``params.yaml``. This module holds only the *types*: every key
must be present, no unknown key is accepted, and each value is type- and
range-checked, so a typo is an error naming the key and the valid ones.
"""
from __future__ import annotations

import copy
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from .errors import FastAdvError

DATASETS = ("cifar10", "svhn", "mnist", "imagenet")
FOLDER_DATASETS = ("imagenet",)  # read from an image folder per batch, not from a prepared .npz
MODELS = ("preact_resnet18", "preact_resnet18_wong", "mnist_cnn", "one_layer_cnn", "resnet50")
METHODS = ("standard", "fgsm", "fgsm_rs", "gradalign", "gradalign_fd", "nfgsm", "elle", "elle_a", "cure", "llr",
           "pgd", "free")
# Sections of params.yaml; `train`/`evaluate` hold run settings, the rest belong
# to the workflow (scales of the study, experiments of the paper).
TOP_LEVEL_SECTIONS = ("train", "evaluate", "variants", "experiments", "resources", "scales")
# Top-level settings of the workflow: the scale the unscaled targets build, the CPU override.
TOP_LEVEL_SCALARS = ("scale", "allow_cpu")


@dataclass(frozen=True)
class Spec:
    """Type of one config value. ``kind``: int, float, bool, str or choice."""

    kind: str
    choices: tuple = ()
    optional: bool = False
    min: float | None = None
    max: float | None = None
    min_exclusive: bool = False

    def check(self, key: str, value: Any) -> Any:
        if value is None:
            if self.optional:
                return None
            raise FastAdvError(f"config key {key} must not be null")
        if self.kind == "choice":
            if value not in self.choices:
                raise FastAdvError(f"invalid {key} {value!r}; valid: {', '.join(self.choices)}")
            return value
        ok = {
            "bool": isinstance(value, bool),
            "int": isinstance(value, int) and not isinstance(value, bool),
            "float": isinstance(value, (int, float)) and not isinstance(value, bool),
            "str": isinstance(value, str),
        }[self.kind]
        if not ok:
            raise FastAdvError(f"config key {key} must be {self.kind}, got {value!r} ({type(value).__name__})")
        if self.kind == "float":
            value = float(value)
            if not math.isfinite(value):
                raise FastAdvError(f"config key {key} must be finite, got {value!r}")
        if self.kind in ("int", "float"):
            low_bad = self.min is not None and (value <= self.min if self.min_exclusive else value < self.min)
            if low_bad or (self.max is not None and value > self.max):
                lo = "-inf" if self.min is None else ("(" if self.min_exclusive else "[") + f"{self.min:g}"
                hi = "inf)" if self.max is None else f"{self.max:g}]"
                raise FastAdvError(f"config key {key}={value!r} out of range; valid: {lo}, {hi}")
        return value


@dataclass(frozen=True)
class ListSpec:
    """A non-empty list whose items all satisfy ``item``."""

    item: Spec

    def check(self, key: str, value: Any) -> list:
        if not isinstance(value, list) or not value:
            raise FastAdvError(f"config key {key} must be a non-empty list, got {value!r}")
        return [self.item.check(f"{key}[{i}]", v) for i, v in enumerate(value)]


def _int(min=None, max=None, optional=False):
    return Spec("int", min=min, max=max, optional=optional)


def _float(min=None, max=None, optional=False, min_exclusive=False):
    return Spec("float", min=min, max=max, optional=optional, min_exclusive=min_exclusive)


def _choice(*choices):
    return Spec("choice", choices=tuple(choices))


_BOOL, _STR = Spec("bool"), Spec("str")

TRAIN_SCHEMA: dict = {
    "data": {
        "dataset": _choice(*DATASETS),
        "root": _STR,
        "subset": _int(min=1, optional=True),
        "subset_mode": _choice("first", "random"),
        "augment": _BOOL,
    },
    "model": {
        "name": _choice(*MODELS),
        "width": _int(min=1),
        "normalize": _BOOL,
    },
    "method": {
        "name": _choice(*METHODS),
        # ε in units of 1/255; above half the pixel range nothing is "adversarial".
        "eps": _float(min=0, max=128, min_exclusive=True),
        "fgsm": {"alpha": _float(min=0, min_exclusive=True)},
        "fgsm_rs": {"alpha": _float(min=0, min_exclusive=True)},
        "gradalign": {"lambda": _float(min=0, optional=True), "alpha": _float(min=0, min_exclusive=True)},
        "gradalign_fd": {"lambda": _float(min=0, optional=True), "alpha": _float(min=0, min_exclusive=True),
                         "fd_step": _float(min=0, max=1, min_exclusive=True)},
        "nfgsm": {"noise": _float(min=0), "alpha": _float(min=0, min_exclusive=True)},
        "elle": {"lambda": _float(min=0, optional=True), "alpha": _float(min=0, min_exclusive=True), "clip": _BOOL},
        "elle_a": {"lambda": _float(min=0, optional=True), "lambda_max": _float(min=0),
                   "decay": _float(min=0, max=1), "alpha": _float(min=0, min_exclusive=True), "clip": _BOOL},
        "cure": {"lambda": _float(min=0), "step": _float(min=0, min_exclusive=True), "base": _choice("clean", "fgsm"),
                 "alpha": _float(min=0, min_exclusive=True)},
        "llr": {"lambda": _float(min=0), "mu": _float(min=0), "steps": _int(min=1),
                "alpha": _float(min=0, min_exclusive=True), "base": _choice("clean", "fgsm"),
                "fgsm_alpha": _float(min=0, min_exclusive=True)},
        "pgd": {"steps": _int(min=1), "alpha": _float(min=0, min_exclusive=True), "random_init": _BOOL},
        "free": {"replay": _int(min=1), "alpha": _float(min=0, min_exclusive=True),
                 "variant": _choice("official", "shafahi")},
        "clamp_in_graph": _BOOL,
        "extra_clean_forward": _BOOL,
    },
    "optim": {
        "name": _choice("sgd", "adam"),
        "epochs": _int(min=1),
        "batch_size": _int(min=1),
        "lr_schedule": _choice("cyclic", "piecewise", "constant"),
        "lr_max": _float(min=0, min_exclusive=True),
        "lr_peak": _float(min=0, max=1, min_exclusive=True),
        "momentum": _float(min=0, max=1),
        "weight_decay": _float(min=0),
        "warmup_epochs": _float(min=0),
        "drop_last": _BOOL,
    },
    "monitor": {
        "every_iterations": _int(min=0),
        "test_points": _int(min=1),
        "train_points": _int(min=1),
        "pgd_steps": _int(min=1),
        "batch_size": _int(min=1),
        "co_pgd_ratio": _float(min=0, max=1),
        "co_min_gap": _float(min=0, max=1),
    },
    "runtime": {
        "seed": _int(min=0),
        "device": _choice("auto", "cpu", "cuda"),
        "threads": _int(min=0),
        "precision": _choice("fp32", "fp16", "bf16"),
        "checkpoint_every": _int(min=0),
        "progress": _choice("auto", "always", "never"),
    },
}


# `fastadv evaluate` settings (the paper's final evaluation).
EVAL_SCHEMA: dict = {
    "n_points": _int(min=1, optional=True),
    "protocol": _choice("pgd50_10", "wong_pgd50_10"),
    "restart_rule": _choice("worst_case", "both"),
    "autoattack": _BOOL,
    "batch_size": _int(min=1),
    "autoattack_batch_size": _int(min=1),
    "seed": _int(min=0),
    "full_clean": _BOOL,
    "device": _choice("auto", "cpu", "cuda"),
    "threads": _int(min=0),
}
# Scheduler resources of workflow jobs (Snakemake/SLURM); not hyperparameters.
RESOURCES_SCHEMA: dict = {
    "gpu": _int(min=0),
    "train_threads": _int(min=1),
    "eval_threads": _int(min=1),
    "train_mem_mb": _int(min=1),
    "train_runtime": _int(min=1),
    "eval_mem_mb": _int(min=1),
    "eval_runtime": _int(min=1),
}
SCHEMAS = {"train": TRAIN_SCHEMA, "evaluate": EVAL_SCHEMA, "resources": RESOURCES_SCHEMA}


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
    return _validate(cfg, SCHEMAS[section], where or section, partial)


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
    if here.is_file():
        return here
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
    for section in SCHEMAS:
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
