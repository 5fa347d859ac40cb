"""Saving and loading models and training state: atomic writes, ``weights_only=True`` loads.

A model file holds only tensors and plain Python values (its architecture as a
small dict), so loading never unpickles arbitrary objects; a crafted pickle that
would run code is refused by torch's weights-only unpickler.
"""
from __future__ import annotations

import re
import zipfile
from pathlib import Path

import torch

from fastadv import atomic
from fastadv.config.run_config import TrainConfig, as_train_config
from fastadv.data.registry import dataset_spec
from fastadv.errors import FastAdvError
from fastadv.models import build_model
from fastadv.models.foreign import describe

MODEL_FORMAT = "fastadv-model-v1"
STATE_FORMAT = "fastadv-train-state-v1"


def load_weights_only(path: str | Path, expect_format: str) -> dict:
    """torch.load with weights_only=True; any failure becomes a one-line FastAdvError."""
    path = Path(path)
    obj = load_plain(path)
    if not isinstance(obj, dict) or obj.get("format") != expect_format:
        source = describe(obj) if expect_format == MODEL_FORMAT else None
        if source:
            raise FastAdvError(f"checkpoint {str(path)!r} holds weights as {IMPORT_SOURCES[source]}, not a fastadv "
                               f"model file; convert it first: fastadv import --from {source} {str(path)!r} "
                               f"--out {path.stem}.fastadv.pt")
        got = obj.get("format") if isinstance(obj, dict) else type(obj).__name__
        raise FastAdvError(f"checkpoint {str(path)!r} has format {got!r}; expected {expect_format!r}")
    return obj


def load_plain(path: str | Path):
    """Whatever a file holds, loaded with weights_only=True (tensors, dicts, lists, numbers, strings only);
    a missing, broken or pickled-object file is a one-line FastAdvError."""
    path = Path(path)
    if not path.is_file():
        raise FastAdvError(f"checkpoint {str(path)!r} not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # torch raises a dozen types for a foreign, truncated or hostile file
        raise FastAdvError(f"checkpoint {str(path)!r} is corrupt, truncated or not a plain-weights file: "
                           f"{_load_failure(e)}") from None


# What a foreign checkpoint looks like (fastadv.models.foreign.describe), for the hint to convert it.
IMPORT_SOURCES = {"official": "the official GradAlign code saves them ({'last', 'best'} or a plain state dict)",
                  "wong": "Wong et al.'s code saves them (DataParallel 'module.' keys or {'state_dict': …})"}


def _load_failure(e: Exception) -> str:
    """Why torch's weights-only loader refused a file, in one line (its own message is many lines of advice,
    with terminal colour codes, that ends by suggesting to unpickle the file)."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(e))
    found = re.search(r"Unsupported global: GLOBAL ([\w.]+)", text)
    if found:
        return (f"it holds pickled Python objects ({found.group(1)}), which weights-only loading refuses to run "
                "(refused by weights_only load)")
    if isinstance(e, (zipfile.BadZipFile, EOFError)) or "PytorchStreamReader" in text or isinstance(e, KeyError):
        return "not a complete torch archive (refused by weights_only load)"
    first = text.strip().splitlines()[0][:200] if text.strip() else ""
    return f"{type(e).__name__}{': ' + first if first else ''} (refused by weights_only load)"


def model_spec(cfg: TrainConfig) -> dict:
    """The architecture part of a train config, stored with every model file."""
    d, norm = dataset_spec(cfg.data.dataset), cfg.model.normalize
    return {"name": cfg.model.name, "width": cfg.model.width, "num_classes": d.num_classes,
            "in_shape": list(d.shape), "mean": list(d.mean) if norm else None, "std": list(d.std) if norm else None}


def model_from_spec(spec: dict) -> torch.nn.Module:
    return build_model(spec["name"], width=spec["width"], num_classes=spec["num_classes"],
                       in_shape=tuple(spec["in_shape"]), mean=spec["mean"], std=spec["std"])


def save_model(path, model, cfg: TrainConfig | dict, kind: str, epoch: int) -> None:
    cfg = as_train_config(cfg)
    state = {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}
    atomic.save_torch(path, {"format": MODEL_FORMAT, "spec": model_spec(cfg), "state_dict": state,
                             "config": cfg.to_dict(), "kind": kind, "epoch": epoch})


def save_imported_model(path, state: dict, spec: dict, origin: dict) -> None:
    """A model converted from another code base (fastadv.zoo): weights, architecture with its normalisation,
    and where it came from (``origin``: source, file, dataset, ε, …) in place of a training config."""
    state = {k: v.detach().cpu().clone() for k, v in state.items()}
    atomic.save_torch(path, {"format": MODEL_FORMAT, "spec": spec, "state_dict": state, "config": None,
                             "origin": origin, "kind": origin.get("kind", "final"), "epoch": None})


def load_model(path: str | Path, device: str | torch.device = "cpu") -> torch.nn.Module:
    """A trained fastadv model, in eval mode, taking NCHW inputs in [0,1] (safe: weights_only)."""
    obj = load_weights_only(path, MODEL_FORMAT)
    model = model_from_spec(obj["spec"])
    try:
        model.load_state_dict(obj["state_dict"])
    except RuntimeError as e:
        raise FastAdvError(f"checkpoint {str(path)!r} does not fit its declared model "
                           f"{obj['spec']['name']}: {str(e).splitlines()[0]}") from None
    return model.to(device).eval()


def load_model_record(path: str | Path) -> dict:
    """The whole model file (spec, config, kind, epoch, weights)."""
    return load_weights_only(path, MODEL_FORMAT)


def training_config(path: str | Path) -> dict:
    """The training config stored with a model trained by fastadv; an imported model (``fastadv import``) has
    none, which is a one-line error for the commands that need it."""
    record = load_model_record(path)
    if record["config"] is None:
        origin = record.get("origin") or {}
        raise FastAdvError(f"{str(path)!r} was imported from {origin.get('source', 'another code base')} "
                           f"({origin.get('file', '?')}): it has no fastadv training config; this command needs a "
                           "model trained by fastadv (fastadv evaluate works on it)")
    return record["config"]
