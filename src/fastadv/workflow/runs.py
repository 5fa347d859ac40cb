"""Runs shared between experiments: a run some earlier experiment of params.yaml also asks for, resolved to the
same train and evaluation configs (threads aside), is trained and evaluated once, in that experiment's folders
(the sweep reuses the demo's runs). The workflow's input functions ask :func:`run_home` where a run lives."""
from __future__ import annotations

from fastadv.config.study import Study


def run_home(study: Study, experiment: str, run: dict) -> str:
    """The experiment whose directories hold ``run`` (an item of ``study.runs(experiment)``): the first experiment
    of params.yaml with the same run resolved to the same train and evaluation configs, else ``experiment``. One
    training and its evaluations then serve every experiment asking for them (the sweep reuses the demo's runs);
    a config that differs in anything but threads keeps the run apart."""
    key = ("home", experiment, run["variant"], run["eps"], run["seed"])
    if key not in study._memo:
        study._memo[key] = _run_home(study, experiment, run)
    return study._memo[key]


def _run_key(run: dict) -> tuple:
    return run["dataset"], run["variant"], float(run["eps"]), run["seed"]


def _run_home(study: Study, experiment: str, run: dict) -> str:
    mine = None
    for other in study.doc["experiments"]:
        if other == experiment:
            break
        if ("run_keys", other) not in study._memo:
            study._memo[("run_keys", other)] = {_run_key(r) for r in study.runs(other)}
        if _run_key(run) not in study._memo[("run_keys", other)]:
            continue
        mine = mine or run_identity(study, experiment, run)
        if run_identity(study, other, run) == mine:
            return other
    return experiment


def run_identity(study: Study, experiment: str, run: dict) -> tuple[dict, dict]:
    """What a run's outputs depend on: its resolved train and evaluation configs, threads left out."""
    train = study.train_config(experiment, run["variant"], run["eps"], run["seed"])
    train["runtime"].pop("threads")
    evaluate = study.eval_config(experiment)
    evaluate.pop("threads")
    return train, evaluate
