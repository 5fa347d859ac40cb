"""Types of config values: what a key accepts, checked with one-line errors naming the key and the
valid values. Torch-free (the workflow validates configs with it)."""
from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

from fastadv.errors import FastAdvError


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
class RecordSpec:
    """A mapping with exactly the keys of ``fields`` (each required), e.g. one item of a list of phases."""

    fields: dict

    def check(self, key: str, value: Any) -> dict:
        if not isinstance(value, dict):
            raise FastAdvError(f"config key {key} must be a mapping with keys {', '.join(self.fields)}, got {value!r}")
        unknown = [k for k in value if k not in self.fields]
        if unknown:
            raise FastAdvError(f"unknown config key {key}.{unknown[0]}; valid keys in {key}: {', '.join(self.fields)}")
        missing = [k for k in self.fields if k not in value]
        if missing:
            raise FastAdvError(f"missing config key(s) in {key}: {', '.join(missing)}")
        return {k: spec.check(f"{key}.{k}", value[k]) for k, spec in self.fields.items()}


@dataclass(frozen=True)
class ListSpec:
    """A non-empty list whose items all satisfy ``item`` (or null, when ``optional``)."""

    item: "Spec | RecordSpec"
    optional: bool = False

    def check(self, key: str, value: Any) -> list | None:
        if value is None and self.optional:
            return None
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


def key(spec) -> "dataclasses.Field":
    """A config key as a dataclass field: its type (``spec``) in the field's metadata, where the section's
    schema is read from (fastadv.config.sections.Section.schema)."""
    return dataclasses.field(metadata={"spec": spec})
