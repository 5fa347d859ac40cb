"""The resolved config of one run, typed and frozen: what training, evaluation and the benchmarks read.

The params file, ``--set``, ``--resolved`` and the workflow all resolve to a plain nested dict, which
fastadv.config.params validates; :meth:`TrainConfig.from_dict` / :meth:`EvalConfig.from_dict` turn it
into these objects once, at the entry of ``train``/``evaluate``, and :meth:`to_dict` gives back the
dict that is stored with every output (``config.yaml``, model files, ``summary.json``). The sections'
fields are the schema's keys (a test keeps the two equal); their meanings and defaults are in params.yaml.

ε: ``method.eps`` is the value as written (units of 1/255); code reads the absolute
``method.eps_abs`` (fastadv.units holds the one conversion). Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

from fastadv.config.params import validate_section
from fastadv.units import eps_absolute


def _frozen(value: Any) -> Any:
    """Read-only view of nested mappings (a frozen dataclass only stops its own attributes changing)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def _thawed(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [_thawed(v) for v in value]
    return value


class _Section:
    """A flat section of the schema: one field per key."""

    @classmethod
    def from_dict(cls, d: Mapping):
        return cls(**{f.name: _frozen(d[f.name]) for f in fields(cls)})

    def to_dict(self) -> dict:
        return {f.name: _thawed(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DataConfig(_Section):
    dataset: str
    root: str
    subset: int | None
    subset_mode: str
    augment: bool
    phases: tuple | None


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
class ModelConfig(_Section):
    name: str
    width: int
    normalize: bool


@dataclass(frozen=True)
class MethodConfig:
    """``train.method``: the method, ε, the parity switches, and every method's parameter block (kept so the
    stored config is the one resolved; :attr:`params` is the chosen method's)."""

    name: str
    eps: float                            # as written: units of 1/255
    blocks: Mapping[str, Mapping] = field(default_factory=lambda: MappingProxyType({}))
    clamp_in_graph: bool = False
    extra_clean_forward: bool = False

    def __post_init__(self):
        object.__setattr__(self, "blocks", _frozen(self.blocks))

    @property
    def eps_abs(self) -> float:
        """ε in absolute [0,1] pixel units: what attacks and methods take."""
        return eps_absolute(self.eps)

    @property
    def params(self) -> Mapping:
        return self.blocks.get(self.name, MappingProxyType({}))

    @classmethod
    def from_dict(cls, d: Mapping) -> "MethodConfig":
        switches = ("name", "eps", "clamp_in_graph", "extra_clean_forward")
        return cls(d["name"], d["eps"], {k: v for k, v in d.items() if k not in switches},
                   d.get("clamp_in_graph", False), d.get("extra_clean_forward", False))

    def to_dict(self) -> dict:
        return {"name": self.name, "eps": self.eps, **_thawed(self.blocks),
                "clamp_in_graph": self.clamp_in_graph, "extra_clean_forward": self.extra_clean_forward}


@dataclass(frozen=True)
class OptimConfig(_Section):
    name: str
    epochs: int
    batch_size: int
    lr_schedule: str
    lr_max: float
    lr_peak: float
    lr_epochs: tuple | None
    lr_values: tuple | None
    momentum: float
    weight_decay: float
    no_decay_on_batchnorm: bool
    warmup_epochs: float
    drop_last: bool


@dataclass(frozen=True)
class MonitorConfig(_Section):
    every_iterations: int
    test_points: int
    train_points: int
    pgd_steps: int
    batch_size: int
    co_pgd_ratio: float
    co_min_gap: float
    co_alpha: float
    learned_clean_ratio: float
    best_by: str


@dataclass(frozen=True)
class RuntimeConfig(_Section):
    seed: int
    device: str
    threads: int
    precision: str
    channels_last: bool
    double_backward: str
    checkpoint_every: int
    progress: str
    sync_batchnorm: bool
    dist_timeout_s: int
    dvclive: bool
    loader_workers: int


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
        cfg = validate_section(_thawed(cfg), "train", where=where)
        return cls(**{f.name: _SECTION_TYPES[f.name].from_dict(cfg[f.name]) for f in fields(cls)})

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


_SECTION_TYPES = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig, "optim": OptimConfig,
                  "monitor": MonitorConfig, "runtime": RuntimeConfig}


@dataclass(frozen=True)
class EvalConfig(_Section):
    """The ``evaluate`` section: the paper's final evaluation."""

    n_points: int | None
    protocol: str
    also_protocol: str | None
    also_n_points: int | None
    crop: int | None
    restart_rule: str
    autoattack: bool
    batch_size: int
    autoattack_batch_size: int
    seed: int
    full_clean: bool
    device: str
    threads: int

    @classmethod
    def from_dict(cls, d: Mapping, where: str = "evaluate") -> "EvalConfig":
        return super().from_dict(validate_section(_thawed(d), "evaluate", where=where))


def as_train_config(cfg: "TrainConfig | Mapping") -> TrainConfig:
    return cfg if isinstance(cfg, TrainConfig) else TrainConfig.from_dict(cfg)


def as_eval_config(cfg: "EvalConfig | Mapping") -> EvalConfig:
    return cfg if isinstance(cfg, EvalConfig) else EvalConfig.from_dict(cfg)


__all__ = ["TrainConfig", "EvalConfig", "Phase", "DataConfig", "ModelConfig", "MethodConfig", "OptimConfig",
           "MonitorConfig", "RuntimeConfig", "as_train_config", "as_eval_config"]
