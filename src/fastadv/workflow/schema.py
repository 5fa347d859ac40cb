"""The JSON schema Snakemake validates the config against, generated from the code when the workflow is
parsed: methods installed from other packages (entry points, fastadv.methods.registry) are then valid
names with valid sections. ``workflow/schemas/config.schema.yaml`` is the same schema for the built-in
methods, kept for readers and tools (a test keeps the two equal)."""
from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path

import yaml

from fastadv import atomic
from fastadv.config.schema import json_schema


def schema_file() -> str:
    """Path of the current schema as a YAML file (named by its content, so parses share it)."""
    text = yaml.safe_dump(json_schema(), sort_keys=False, allow_unicode=True)
    path = Path(tempfile.gettempdir()) / f"fastadv-config-schema-{hashlib.sha256(text.encode()).hexdigest()[:16]}.yaml"
    if not path.is_file():
        atomic.write_text(path, text)
    return str(path)
