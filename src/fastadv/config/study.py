"""The study: method variants, experiments and scales of ``params.yaml``, resolved into run configs.

* ``variants``: label → overrides of ``train`` (e.g. ``pgd2``: PGD with 2 steps, α = ε/2).
* ``experiments``: a figure or table as data — dataset, variant labels, ε grid, seeds,
  which models (final / early-stopped) to evaluate, AutoAttack or not, and optional
  ``train``/``evaluate`` overrides.
* ``scales``: ``paper`` / ``quick`` / ``smoke`` overrides of ``train``, ``evaluate``,
  ``variants`` and ``experiments``.

A run's train config is resolved in this order (later wins):
``train`` ← ``variants[v]`` ← ``experiments[e].train`` ← ``experiments[e].variants[v]`` ← ``scales[s].train`` ←
``scales[s].variants[v]`` ← ``scales[s].experiments[e].train`` ← (dataset, ε, seed) of
the run ← ``--set``. A scale's ``train`` comes after the variant so that, say, the smoke
scale's 2 epochs also bind Free AT (whose variant asks for 96).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from fastadv.config.params import deep_merge, parse_set, read_params, validate_section
from fastadv.data.registry import DATASETS
from fastadv.config.spec import _BOOL, _STR, ListSpec, Spec, _choice, _float, _int
from fastadv.config.zoo import validate_zoo
from fastadv.errors import FastAdvError, unknown_choice

MODEL_KINDS = ("final", "best")
EXPERIMENT_SCALARS = {
    "description": _STR,
    "dataset": _choice(*DATASETS),
    "methods": ListSpec(Spec("str")),
    "eps": ListSpec(_float(min=0, max=128, min_exclusive=True)),
    "seeds": ListSpec(_int(min=0)),
    "models": ListSpec(_choice(*MODEL_KINDS)),
    "autoattack": _BOOL,
}
EXPERIMENT_SECTIONS = ("train", "evaluate", "resources")
SCALE_KEYS = ("train", "evaluate", "resources", "variants", "experiments", "zoo")


def _check_keys(d, allowed, where):
    if not isinstance(d, dict):
        raise FastAdvError(f"{where} must be a mapping, got {d!r}")
    for k in d:
        if k not in allowed:
            raise FastAdvError(f"unknown config key {where}.{k!r}; valid: {', '.join(allowed)}")


def validate_experiment_scalars(exp, where: str) -> dict:
    """The scalar part of a resolved experiment (dataset, methods, ε grid, seeds, model kinds …)."""
    _check_keys(exp, tuple(EXPERIMENT_SCALARS) + EXPERIMENT_SECTIONS + ("variants",), where)
    missing = [k for k in EXPERIMENT_SCALARS if k not in exp]
    if missing:
        raise FastAdvError(f"missing config key(s) in {where}: {', '.join(missing)}")
    return {**exp, **{k: spec.check(f"{where}.{k}", exp[k]) for k, spec in EXPERIMENT_SCALARS.items()}}


def merged(base: dict, layers: list[dict], section: str | None = None) -> dict:
    """``base`` with each of ``layers`` merged over it in turn (later wins, key by key): the one way every config
    of the study is resolved. With ``section`` each layer is checked first as a partial ``train``/``evaluate``/
    ``resources`` section (a wrong key or value is named with its place)."""
    for layer in layers:
        base = deep_merge(base, validate_section(layer, section, partial=True) if section else layer)
    return base


def apply_sets(cfg: dict, section: str, sets: list[str] = ()) -> dict:
    """A whole ``train``/``evaluate`` config with ``--set key=value`` overrides applied, validated."""
    # merged before the whole is checked: the workflow leaves runtime.threads to --set
    return validate_section(merged(cfg, [parse_set(s, section) for s in sets], section), section)


def _validate_experiment(exp: dict, where: str, variants: dict, partial: bool) -> dict:
    _check_keys(exp, tuple(EXPERIMENT_SCALARS) + EXPERIMENT_SECTIONS + ("variants",), where)
    out = {}
    for k, spec in EXPERIMENT_SCALARS.items():
        if k in exp:
            out[k] = spec.check(f"{where}.{k}", exp[k])
        elif not partial:
            raise FastAdvError(f"missing config key {where}.{k}")
    for label in out.get("methods", []):
        if label not in variants:
            raise unknown_choice(f"method variant in {where}.methods", label, variants)
    for sec in EXPERIMENT_SECTIONS:
        out[sec] = validate_section(exp.get(sec) or {}, sec, partial=True, where=f"{where}.{sec}")
    out["variants"] = {}
    for label, over in (exp.get("variants") or {}).items():
        if label not in variants:
            raise unknown_choice(f"method variant in {where}.variants", label, variants)
        out["variants"][label] = validate_section(over or {}, "train", partial=True, where=f"{where}.variants.{label}")
    return out


def validate_study(doc: dict) -> dict:
    """Check the whole params document (every section, every scale); return it normalised."""
    train = validate_section(doc["train"], "train")
    evaluate = validate_section(doc["evaluate"], "evaluate")
    resources = validate_section(doc["resources"], "resources")
    variants = {k: validate_section(v or {}, "train", partial=True, where=f"variants.{k}")
                for k, v in (doc.get("variants") or {}).items()}
    experiments = {k: _validate_experiment(v, f"experiments.{k}", variants, False)
                   for k, v in (doc.get("experiments") or {}).items()}
    scales = {}
    for name, sc in (doc.get("scales") or {}).items():
        sc = sc or {}
        _check_keys(sc, SCALE_KEYS, f"scales.{name}")
        for label in sc.get("variants") or {}:
            if label not in variants:
                raise unknown_choice(f"variant in scales.{name}.variants", label, variants)
        for e in sc.get("experiments") or {}:
            if e not in experiments:
                raise unknown_choice(f"experiment in scales.{name}.experiments", e, experiments)
        at = f"scales.{name}"
        scales[name] = {
            "train": validate_section(sc.get("train") or {}, "train", partial=True, where=f"{at}.train"),
            "evaluate": validate_section(sc.get("evaluate") or {}, "evaluate", partial=True, where=f"{at}.evaluate"),
            "resources": validate_section(sc.get("resources") or {}, "resources", partial=True,
                                          where=f"{at}.resources"),
            "variants": {k: validate_section(v or {}, "train", partial=True, where=f"{at}.variants.{k}")
                         for k, v in (sc.get("variants") or {}).items()},
            "experiments": {k: _validate_experiment(v or {}, f"scales.{name}.experiments.{k}", variants, True)
                            for k, v in (sc.get("experiments") or {}).items()},
            "zoo": validate_zoo(sc.get("zoo"), f"{at}.zoo", partial=True),
        }
    scale = doc.get("scale", "paper")
    if scale != "paper" and scale not in scales:
        raise unknown_choice("scale (top-level key scale)", scale, {"paper", *scales})
    allow_cpu = _BOOL.check("allow_cpu", doc.get("allow_cpu", False))
    return {"train": train, "evaluate": evaluate, "resources": resources, "variants": variants,
            "experiments": experiments, "scales": scales, "scale": scale, "allow_cpu": allow_cpu,
            "zoo": validate_zoo(doc.get("zoo") or {"dir": "models"})}


@dataclass
class Study:
    """A validated params document at one scale (``None``: the document's own ``scale:`` key)."""

    doc: dict
    scale: str | None = None
    # Resolved layers shared by many runs (the workflow asks for every job's config when it plans): kept, and
    # only copies handed out, so callers may change what they get.
    _memo: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self):
        if self.scale is None:
            self.scale = self.doc["scale"]
        if self.scale != "paper" and self.scale not in self.doc["scales"]:
            raise unknown_choice("scale", self.scale, self.doc["scales"])

    @classmethod
    def load(cls, path, scale: str | None = None) -> "Study":
        return cls(validate_study(read_params(path)), scale)

    @property
    def _scale(self) -> dict:
        empty = {"train": {}, "evaluate": {}, "resources": {}, "variants": {}, "experiments": {}, "zoo": {}}
        return self.doc["scales"].get(self.scale, empty)  # `paper` may be left out: no overrides

    def experiment(self, name: str) -> dict:
        if name not in self.doc["experiments"]:
            raise unknown_choice("experiment", name, self.doc["experiments"])
        over = self._scale["experiments"].get(name, {})
        return merged(self.doc["experiments"][name], [over])

    def runs(self, name: str) -> list[dict]:
        """Every training run of an experiment: dicts with dataset, variant, eps, seed."""
        e = self.experiment(name)
        return [{"dataset": e["dataset"], "variant": v, "eps": eps, "seed": s}
                for v in e["methods"] for eps in e["eps"] for s in e["seeds"]]

    def train_config(self, experiment: str | None = None, variant: str | None = None, eps: float | None = None,
                     seed: int | None = None, sets: list[str] = ()) -> dict:
        cfg = self._variant_config(experiment, variant)
        layers = [
            {"method": {"eps": float(eps)}} if eps is not None else {},
            {"runtime": {"seed": int(seed)}} if seed is not None else {},
        ] + [parse_set(s, "train") for s in sets]
        return validate_section(merged(cfg, layers, "train"), "train")

    def _variant_config(self, experiment: str | None, variant: str | None) -> dict:
        """``train`` ← the variant ← the experiment's ← the scale's layers (module docstring), before ε, seed and
        ``--set`` (the same for every run of a variant in an experiment: resolved once)."""
        key = ("train", experiment, variant)
        if key not in self._memo:
            if variant is not None and variant not in self.doc["variants"]:
                raise unknown_choice("method variant", variant, self.doc["variants"])
            sc = self._scale
            exp = self.experiment(experiment) if experiment else None
            base_exp = self.doc["experiments"][experiment] if experiment else {}
            layers = [
                self.doc["variants"].get(variant, {}),
                base_exp.get("train", {}),
                base_exp.get("variants", {}).get(variant, {}),
                sc["train"],
                sc["variants"].get(variant, {}),
                sc["experiments"].get(experiment, {}).get("train", {}) if experiment else {},
                {"data": {"dataset": exp["dataset"]}} if exp else {},
            ]
            self._memo[key] = merged(self.doc["train"], layers, "train")
        return self._memo[key]

    def resources(self, experiment: str | None = None) -> dict:
        """Scheduler requests of a job: ``resources`` ← the scale's ← the experiment's ← the scale's for the
        experiment (an experiment sized for CPUs, like ``cnn4``, asks for no GPU at any scale)."""
        key = ("resources", experiment)
        if key not in self._memo:
            self._memo[key] = self._resources(experiment)
        return dict(self._memo[key])

    def _resources(self, experiment: str | None) -> dict:
        layers = [self._scale["resources"]]
        if experiment:
            self.experiment(experiment)  # an unknown name is an error
            layers += [self.doc["experiments"][experiment].get("resources", {}),
                       self._scale["experiments"].get(experiment, {}).get("resources", {})]
        return merged(self.doc["resources"], layers)

    def zoo(self, sets: list[str] = ()) -> dict:
        """The zoo at this scale: ``dir``, the whole evaluation config (``evaluate`` ← the scale's ←
        ``zoo.evaluate`` ← the scale's ``zoo.evaluate`` ← ``--set``) and the models."""
        base, over = self.doc["zoo"], self._scale.get("zoo", {})
        layers = [base["evaluate"], over.get("evaluate", {})] + [parse_set(s, "evaluate") for s in sets]
        cfg = merged(self.eval_config(), layers, "evaluate")
        return {"dir": over.get("dir", base["dir"]), "evaluate": validate_section(cfg, "evaluate"),
                "models": over.get("models", base["models"])}

    def eval_config(self, experiment: str | None = None, sets: list[str] = ()) -> dict:
        sc = self._scale
        layers = []
        if experiment:
            exp = self.experiment(experiment)
            layers += [self.doc["experiments"][experiment].get("evaluate", {}), {"autoattack": exp["autoattack"]}]
        layers += [sc["evaluate"]]
        if experiment:
            layers += [sc["experiments"].get(experiment, {}).get("evaluate", {})]
        layers += [parse_set(s, "evaluate") for s in sets]
        return validate_section(merged(self.doc["evaluate"], layers, "evaluate"), "evaluate")


def resolve_config(path: str | Path, section: str, scale: str | None = None, sets: list[str] = ()) -> dict:
    """params.yaml ``section`` ← scale overrides ← ``--set`` overrides, validated (see fastadv.config.study)."""
    study = Study.load(path, scale)
    return study.train_config(sets=sets) if section == "train" else study.eval_config(sets=sets)


def resolve_train_config(path: str | Path, scale: str | None = None, sets: list[str] = ()) -> dict:
    return resolve_config(path, "train", scale, sets)


def resized_images(study: Study, experiment: str) -> list[int]:
    """Sizes of the resized copies the runs of ``experiment`` read (their ``data.phases``), sorted."""
    exp = study.experiment(experiment)
    sizes = set()
    for variant in exp["methods"]:
        phases = study.train_config(experiment, variant, exp["eps"][0], exp["seeds"][0])["data"]["phases"]
        sizes.update(ph["images"] for ph in phases or [] if ph["images"] is not None)
    return sorted(sizes)


def dataset_resized_images(study: Study, dataset: str) -> list[int]:
    """Sizes of the resized copies any experiment of ``dataset`` reads at the study's scale (``fastadv prepare``'s
    default for ``--resize``), sorted."""
    return sorted({n for e, x in study.doc["experiments"].items() if x["dataset"] == dataset
                   for n in resized_images(study, e)})
