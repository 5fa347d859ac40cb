"""The notebook API, each in one call: ``train`` (``fastadv.train("gradalign", eps=8/255, scale="smoke")`` resolves
the run's config as ``fastadv train --variant gradalign --eps 8 --scale smoke`` does — the same params file, layers,
validation and one-line errors —, trains or resumes it, and hands back the model, its history and its summary),
``load_model`` (a file, a zoo name or a RobustBench name) and ``benchmark`` (RobustBench's one call, the paper's
protocol).

ε is absolute here, as everywhere in the Python API (8/255); params files and the CLI write it in 1/255
(fastadv.units).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from fastadv.errors import FastAdvError
from fastadv.units import eps_absolute, eps_in_255ths


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
    from fastadv.data.registry import FOLDER_DATASETS

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


def benchmark(model, dataset: str = "cifar10", eps: float = eps_absolute(8), n_examples: int = 1000, *,
              autoattack: bool | str = "auto", data_root: str | Path = "data", split: str = "test",
              batch_size: int = 1024, seed: int = 0, progress: str = "auto") -> dict:
    """RobustBench's one call (``robustbench.eval.benchmark``) with the paper's protocol: the first ``n_examples``
    points of the prepared, verified ``dataset`` (``fastadv prepare``), clean accuracy, PGD-50-10 under both
    restart rules and, with ``pyautoattack`` installed (``"auto"``), standard AutoAttack; ``eps`` absolute. Returns
    fastadv.evaluate_model's dict plus ``dataset``, ``split`` and ``clean_acc`` / ``robust_acc`` (AutoAttack's
    where it ran, else PGD-50-10's worst case, named in ``robust_by``)."""
    from fastadv.data.datasets import load_dataset
    from fastadv.evaluation.protocol import evaluate_model

    x, y = load_dataset(dataset, n=n_examples, split=split, root=data_root)
    res = evaluate_model(model, x, y, eps, autoattack=autoattack, batch_size=batch_size, seed=seed,
                         progress=progress)
    aa = res["autoattack"]
    return {"dataset": dataset, "split": split, **res, "robust_acc": aa["acc"] if aa else res["pgd"]["acc"],
            "robust_by": "autoattack" if aa else "pgd50_10 (worst case over restarts)"}


def _zoo_listing(params) -> list[dict]:
    from fastadv.config.params import default_params
    from fastadv.config.study import Study

    return Study.load(params or default_params()).doc["zoo"]["models"]


def load_model(name_or_path: str | Path, *, dataset: str = "cifar10", threat_model: str = "Linf",
               model_dir: str | Path = "models", source: str | None = None, which: str = "last",
               device: str = "cpu", params: str | Path | None = None):
    """A model in eval mode, taking NCHW inputs in [0,1] (its normalisation inside), from:

    - a fastadv model file (trained or ``fastadv import``-ed): read with ``weights_only=True``;
    - a foreign checkpoint file with its ``source`` (official, wong, robustbench: ``fastadv import --from``);
    - a name: a model listed in the params file's ``zoo:`` for ``dataset`` (its file under ``model_dir``), or a
      RobustBench name (``load_model("Andriushchenko2020Understanding", dataset="cifar10", threat_model="Linf")``,
      RobustBench's ``<model_dir>/<dataset>/Linf/<name>.pt``, downloaded when the robustbench package is there).

    A listed model's source and ``which`` are its listing's. Foreign weights are converted once, into
    ``<model_dir>/fastadv/<dataset>/<name>_<which>.pt``, and that copy is used while its recorded SHA-256 is the
    source file's."""
    from fastadv.config.zoo import listed_path
    from fastadv.data.sources import file_digest
    from fastadv.errors import unknown_choice
    from fastadv.training.checkpoint import load_model as load_file, load_model_record
    from fastadv.zoo import robustbench
    from fastadv.zoo.registry import import_model

    if threat_model != robustbench.THREAT_MODEL:
        raise FastAdvError(f"threat_model {threat_model!r}; valid: {robustbench.THREAT_MODEL}")
    path = Path(name_or_path)
    if path.is_file() and source is None:
        return load_file(path, device)
    if path.is_file():
        src, file, name = str(path), path, path.stem
    else:
        name, listing = str(name_or_path), [e for e in _zoo_listing(params) if e["dataset"] == dataset]
        entry = next((e for e in listing if e["name"] == name), None)
        if entry is None and (dataset, name) not in robustbench.KNOWN:
            listed = sorted({e["name"] for e in listing} | {n for d, n in robustbench.KNOWN if d == dataset})
            raise unknown_choice(f"model file or name for {dataset}", name, listed)
        if entry is not None:  # the listing declares the source, the file and which model in it
            source, which, file = entry["source"], entry["which"], listed_path(entry, model_dir)
            src = entry["file"] if source == "robustbench" else str(file)
        else:
            source, file, src = "robustbench", robustbench.model_path(name, model_dir, dataset), name
    cache = Path(model_dir) / "fastadv" / dataset / f"{name}_{which}.pt"
    if not (cache.is_file() and file.is_file()
            and load_model_record(cache)["origin"]["sha256"] == file_digest(file)):
        import_model(source, src, cache, which=which, dataset=dataset, model_dir=model_dir)
    return load_file(cache, device)
