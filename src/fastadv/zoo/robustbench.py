"""RobustBench's model zoo (Croce et al., NeurIPS 2021 Datasets and Benchmarks; RobustBench/robustbench):
``robustbench.utils.load_model(name, model_dir, dataset, threat_model)`` keeps each model at
``<model_dir>/<dataset>/<threat_model>/<name>.pt`` and downloads it there when absent. That file is read
here with weights-only loading (never RobustBench's own loader): ``{'last', 'best'}`` for
Andriushchenko2020Understanding (RobustBench takes ``'last'``), ``{'state_dict': …}`` or a plain state dict
otherwise. Only the models whose architecture fastadv has are known (:data:`KNOWN`); a missing file is
downloaded through the ``robustbench`` package when it is installed (``pip install "fastadv[robustbench]"``)
and there is a network, else the error says where to put it."""
from __future__ import annotations

import contextlib
import io
import sys
import warnings
from pathlib import Path

from fastadv.errors import FastAdvError, unknown_choice
from fastadv.training.checkpoint import load_plain
from fastadv.zoo import official, wong

THREAT_MODEL = "Linf"
# (dataset, name) -> normalisation and evaluation crop of the model (robustbench/model_zoo/{cifar10,imagenet}.py)
KNOWN = {
    ("cifar10", "Andriushchenko2020Understanding"): {**official.DEFAULTS, "eps": 8.0},
    ("cifar10", "Wong2020Fast"): {**wong.CIFAR10, "eps": 8.0},
    ("imagenet", "Wong2020Fast"): {**wong.IMAGENET, "eps": 4.0},
}


def model_path(name: str, model_dir: str | Path = "models", dataset: str = "cifar10") -> Path:
    return Path(model_dir) / dataset / THREAT_MODEL / f"{name}.pt"


def robustbench_loader():
    """``robustbench.utils.load_model``, imported quietly (its imports warn on stderr: torch.jit, pkg_resources).
    robustbench 1.1.1 requires the ``pyautoattack`` distribution but imports AutoAttack by its git checkout's
    module name, ``autoattack``: that name is given the installed package, or no robustbench import works."""
    try:
        import pyautoattack

        sys.modules.setdefault("autoattack", pyautoattack)
    except ImportError:
        pass  # robustbench's own import then says what is missing
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from robustbench.utils import load_model
    return load_model


def _download(name: str, dataset: str, path: Path) -> None:
    """RobustBench's own download into its cache layout (its progress kept off the terminal, one line said before);
    any failure (package absent or broken, no network) becomes a one-line error saying where to put the file."""
    where = f"put the file at {str(path)!r} (RobustBench's model_dir layout <model_dir>/<dataset>/Linf/<name>.pt)"
    try:
        load_model = robustbench_loader()
    except ImportError as e:
        if e.name == "robustbench":
            raise FastAdvError(f"RobustBench model {name!r} ({dataset}) is not downloaded: {where}, or install the "
                               "robustbench package (pip install \"fastadv[robustbench]\") to download it") from None
        raise FastAdvError(f"RobustBench model {name!r} ({dataset}) is not downloaded and the robustbench package "
                           f"does not import ({type(e).__name__}: {e}): {where}") from None
    print(f"downloading RobustBench model {name} ({dataset}) into {path} with robustbench's loader", flush=True)
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            load_model(name, model_dir=str(path.parents[2]), dataset=dataset, threat_model=THREAT_MODEL)
    except Exception as e:  # no network, a moved file on Google Drive, …: the file is what counts
        if not path.is_file():
            raise FastAdvError(f"RobustBench model {name!r} ({dataset}) could not be downloaded "
                               f"({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}): {where}") from None


def read(src: str, which: str = "last", model_dir: str | Path = "models", dataset: str | None = None, **_) -> dict:
    dataset = dataset or "cifar10"
    if (dataset, src) not in KNOWN:
        raise unknown_choice(f"RobustBench model for {dataset}", src, sorted(n for d, n in KNOWN if d == dataset)
                             or sorted(f"{n} ({d})" for d, n in KNOWN))
    path = model_path(src, model_dir, dataset)
    if not path.is_file():
        _download(src, dataset, path)
    obj = load_plain(path)
    if isinstance(obj, dict) and ("last" in obj or "best" in obj):
        if which not in obj:
            raise FastAdvError(f"{str(path)!r} has no {which!r} model; it holds: {', '.join(map(str, obj))}")
        obj = obj[which]
    elif which != "last":
        raise FastAdvError(f"{str(path)!r} holds one model: --which {which!r} does not apply; valid: last")
    state = obj.get("state_dict") if isinstance(obj, dict) and "state_dict" in obj else obj
    if not isinstance(state, dict):
        raise FastAdvError(f"{str(path)!r} holds a {type(state).__name__}, not a state dict")
    return {"state": state, "file": str(path), "dataset": dataset, "kind": "best" if which == "best" else "final",
            **KNOWN[(dataset, src)]}
