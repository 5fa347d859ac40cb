"""The official GradAlign code's checkpoints (Andriushchenko & Flammarion 2020,
tml-epfl/understanding-fast-adv-training): ``train.py`` saves ``{'last': state_dict, 'best': state_dict}``
(the final and the early-stopped model); ``eval.py`` loads ``model_dict['best']`` with
``--early_stopped_model``, else ``model_dict['last']``, or the file itself when it is a plain state dict.
Models (``models.py``): PreActResNet-18 and the single-layer CNN, without input normalisation (μ = 0, σ = 1)."""
from __future__ import annotations

import re
from pathlib import Path

from fastadv.errors import FastAdvError, unknown_choice
from fastadv.training.checkpoint import load_plain

WHICH = ("last", "best")
DEFAULTS = {"mean": None, "std": None, "eval_crop": None}


def read(src: str, which: str = "last", **_) -> dict:
    """The state dict of ``which`` model in ``src``, and what the file name says (ε: ``eps=8.0`` in the
    official names)."""
    if which not in WHICH:
        raise unknown_choice("--which", which, WHICH)
    obj = load_plain(src)
    if not isinstance(obj, dict):
        raise FastAdvError(f"{src!r} holds a {type(obj).__name__}, not the official code's state dicts")
    if "last" in obj or "best" in obj:
        if which not in obj:
            raise FastAdvError(f"{src!r} has no {which!r} model; it holds: {', '.join(map(str, obj))}")
        state = obj[which]
    elif which == "best":
        raise FastAdvError(f"{src!r} is a plain state dict (one model): no 'best' model in it; valid: --which last")
    else:
        state = obj  # eval.py: model_dict['last'] if 'last' in model_dict else model_dict
    found = re.search(r"eps=([0-9.]+)", Path(src).name)
    return {"state": state, "eps": float(found[1].rstrip(".")) if found else None, **DEFAULTS,
            "kind": "best" if which == "best" else "final"}
