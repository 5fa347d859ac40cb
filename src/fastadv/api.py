"""Training from a notebook: ``fastadv.train("gradalign", eps=8/255, scale="smoke")`` resolves the run's config
as ``fastadv train --variant gradalign --eps 8 --scale smoke`` does (the same params file, layers, validation and
one-line errors), trains or resumes it, and hands back the model, its history and its summary.

ε is absolute here, as everywhere in the Python API (8/255); params files and the CLI write it in 1/255
(fastadv.units).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fastadv.errors import FastAdvError
from fastadv.units import eps_in_255ths


@dataclass(frozen=True)
class TrainResult:
    """A finished run: ``model`` (its final weights, eval mode, inputs in [0,1]), ``history`` (history.csv as a
    DataFrame), ``summary`` (summary.json: status, CO epoch, the resolved config) and ``out``, its folder."""
    model: object
    history: object
    summary: dict
    out: Path


def _dotted(overrides: dict, prefix: str = "") -> list[str]:
    """``{"optim.epochs": 2}`` or ``{"optim": {"epochs": 2}}`` → the CLI's ``--set`` pairs (JSON values: YAML)."""
    sets = []
    for key, value in overrides.items():
        if isinstance(value, dict) and value:
            sets += _dotted(value, f"{prefix}{key}.")
        else:
            sets.append(f"{prefix}{key}={json.dumps(value)}")
    return sets


def folder_images(data: dict) -> int | None:
    """Training images of a prepared image folder (its manifest), None for the other datasets or unprepared."""
    from fastadv.config.params import FOLDER_DATASETS

    if data["dataset"] not in FOLDER_DATASETS:
        return None
    from fastadv.data.image_folder import load_manifest

    try:
        return len(load_manifest(data["root"], data["dataset"])["splits"]["train"])
    except FastAdvError:
        return None  # training will say what is missing


def check_can_train(cfg: dict, study, experiment: str | None, allow_cpu: bool) -> None:
    """Refuse, as ``fastadv train`` does, a run this machine should not start (a GPU scale on a CPU)."""
    import torch

    from fastadv.workflow.guard import train_refusal

    refusal = train_refusal(cfg, study.scale, study.resources(experiment)["gpu"], torch.cuda.is_available(),
                            allow_cpu or study.doc["allow_cpu"], folder_images(cfg["data"]))
    if refusal:
        raise FastAdvError(refusal)


def train(method: str, eps: float, *, dataset: str | None = None, scale: str | None = None,
          experiment: str | None = None, seed: int = 0, out: str | Path | None = None, params: str | Path | None = None,
          allow_cpu: bool = False, **overrides) -> TrainResult:
    """Train (or resume, or read back if finished) one run and return it as a :class:`TrainResult`.

    ``method``: a variant of the params file (``fastadv train --variant``: fgsm, fgsm_rs, gradalign — the paper's
    recipe, lr 0.3 —, pgd2, free, ...); ``eps`` absolute (8/255); ``dataset`` sets ``data.dataset``; ``scale`` and
    ``experiment`` pick the params file's layers; ``overrides`` are dotted keys (``**{"optim.epochs": 2}``) or
    sections (``optim={"epochs": 2}``), applied last, as ``--set``. ``out`` defaults to
    ``runs/notebook/<scale>/<method>/eps<ε·255>/seed<seed>``. The same arguments on the command line train the same
    weights (tests/test_api.py)."""
    import pandas as pd

    from fastadv.config.params import default_params
    from fastadv.config.study import Study
    from fastadv.training.checkpoint import load_model
    from fastadv.training.loop import train as train_run

    study = Study.load(params or default_params(), scale)
    sets = _dotted(({"data.dataset": dataset} if dataset is not None else {}) | overrides)
    eps255 = round(eps_in_255ths(eps), 9)  # 8/255 * 255 is 8.000000000000002 in floating point
    cfg = study.train_config(experiment, method, eps255, seed, sets)
    check_can_train(cfg, study, experiment, allow_cpu)
    out = Path(out) if out is not None else Path("runs/notebook", study.scale, method, f"eps{eps255:g}",
                                                 f"seed{seed}")
    summary = train_run(cfg, out)
    return TrainResult(load_model(out / "model_final.pt"), pd.read_csv(out / "history.csv"), summary, out)
