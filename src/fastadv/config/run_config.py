"""The resolved config of one run, typed and frozen: what training, evaluation and the benchmarks read.

The params file, ``--set``, ``--resolved`` and the workflow all resolve to a plain nested dict, which
fastadv.config.params validates; :meth:`TrainConfig.from_dict` / :meth:`EvalConfig.from_dict` turn it
into these objects once, at the entry of ``train``/``evaluate``, and :meth:`to_dict` gives back the
dict that is stored with every output (``config.yaml``, model files, ``summary.json``). The sections and
their keys are declared in fastadv.config.sections (the schema is read from them); their meanings and
defaults are in params.yaml.

ε: ``method.eps`` is the value as written (units of 1/255); code reads the absolute
``method.eps_abs`` (fastadv.units holds the one conversion). Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Mapping

from fastadv.config.params import validate_section
from fastadv.config.sections import (TRAIN_SECTIONS, DataConfig, EvalSettings, MethodConfig, ModelConfig,
                                     MonitorConfig, OptimConfig, RuntimeConfig, thawed)


@dataclass(frozen=True)
class Phase:
    """One resolution phase of a run: training epochs ``start + 1 … end`` (epoch 0 is the statistics at
    initialisation, in the first phase), read from the copies resized to ``images`` px (None: the originals),
    random-resized crops of ``crop`` px (None: the dataset's own augmentation) in global batches of ``batch_size``."""

    start: int
    end: int
    images: int | None
    crop: int | None
    batch_size: int


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of one run."""

    data: DataConfig
    model: ModelConfig
    method: MethodConfig
    optim: OptimConfig
    monitor: MonitorConfig
    runtime: RuntimeConfig

    @classmethod
    def from_dict(cls, cfg: Mapping, where: str = "train") -> "TrainConfig":
        """Validated (every key, types, ranges; method parameters default to their declarations), then typed."""
        cfg = validate_section(thawed(cfg), "train", where=where)
        return cls(**{f.name: TRAIN_SECTIONS[f.name].from_dict(cfg[f.name]) for f in fields(cls)})

    def to_dict(self) -> dict:
        """The stored form: the validated dict this config was made from."""
        return {f.name: getattr(self, f.name).to_dict() for f in fields(self)}

    @property
    def phases(self) -> tuple[Phase, ...]:
        """``data.phases`` resolved (one phase of ``optim.batch_size`` over all epochs without them)."""
        if self.data.phases is None:
            return (Phase(0, self.optim.epochs, None, None, self.optim.batch_size),)
        starts = [0] + [ph["epochs"] for ph in self.data.phases[:-1]]
        return tuple(Phase(a, ph["epochs"], ph["images"], ph["crop"], ph["batch_size"])
                     for a, ph in zip(starts, self.data.phases))

    def phase(self, epoch: int) -> Phase:
        """The phase training ``epoch`` (1-based; 0: initialisation) belongs to."""
        return next(ph for ph in self.phases if epoch <= ph.end)

    def replace(self, **changes: Mapping) -> "TrainConfig":
        """A copy with some keys changed, e.g. ``cfg.replace(method={"name": "fgsm"})`` (validated again)."""
        d = self.to_dict()
        for section, values in changes.items():
            d[section] = {**d[section], **values}
        return TrainConfig.from_dict(d)


@dataclass(frozen=True)
class EvalConfig(EvalSettings):
    """The ``evaluate`` section, validated: the paper's final evaluation (keys: fastadv.config.sections)."""

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "evaluate") -> "EvalConfig":
        return super().from_dict(validate_section(thawed(d), "evaluate", where=where))


def as_train_config(cfg: "TrainConfig | Mapping") -> TrainConfig:
    return cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)


def as_eval_config(cfg: "EvalConfig | Mapping") -> EvalConfig:
    return cfg if isinstance(cfg, EvalConfig) else EvalConfig.from_dict(cfg)


__all__ = ["TrainConfig", "EvalConfig", "Phase", "DataConfig", "ModelConfig", "MethodConfig", "OptimConfig",
           "MonitorConfig", "RuntimeConfig", "as_train_config", "as_eval_config"]
