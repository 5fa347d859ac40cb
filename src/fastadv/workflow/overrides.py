"""Snakemake's ``--config`` overrides given the types params.yaml would give them (Snakemake reads nested values as
strings), by the params file's JSON schema."""
from __future__ import annotations

from fastadv.config.params import parse_scalar
from fastadv.config.schema import json_schema


def _accepts_string(schema: dict) -> bool:
    if not schema or "anyOf" in schema and any(_accepts_string(s) for s in schema["anyOf"]):
        return True
    if "enum" in schema:
        return any(isinstance(v, str) for v in schema["enum"])
    types = schema.get("type", [])
    return "string" in ([types] if isinstance(types, str) else types)


def typed_overrides(value, schema: dict | None = None):
    """Snakemake's ``--config`` values with the types params.yaml would give them.

    Snakemake reads a nested ``--config`` value (``'variants={fgsm: {method: {fgsm: {alpha: 1.0}}}}'``)
    with YAML's BaseLoader, so every leaf arrives as a string. A string where the schema expects
    no string is read again as a YAML scalar (``1.0`` → 1.0, ``null`` → None); anything else is
    left for validation to judge."""
    schema = json_schema() if schema is None else schema
    if isinstance(value, dict):
        props, extra = schema.get("properties", {}), schema.get("additionalProperties")
        return {k: typed_overrides(v, props.get(k, extra if isinstance(extra, dict) else {}))
                for k, v in value.items()}
    if isinstance(value, list):
        return [typed_overrides(v, schema.get("items", {})) for v in value]
    if isinstance(value, str) and not _accepts_string(schema):
        return parse_scalar(value)
    return value
