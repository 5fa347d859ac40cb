"""The evaluation result file (one JSON per model and protocol, written by fastadv.evaluation.protocol, its fields
in eval_result.schema.json): its format name, and reading one back without loading torch (tables, figures)."""
from __future__ import annotations

import json
from pathlib import Path

from fastadv.errors import FastAdvError

RESULT_FORMAT = "fastadv-eval-v1"


def load_result(path: str | Path) -> dict:
    path = Path(path)
    try:
        res = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise FastAdvError(f"result {str(path)!r} unreadable ({type(e).__name__}: {e})") from None
    if res.get("format") != RESULT_FORMAT:
        raise FastAdvError(f"result {str(path)!r} has format {res.get('format')!r}; expected {RESULT_FORMAT!r}")
    return res
