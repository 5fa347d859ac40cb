"""The keys of a run's config, each declared once: a typed field of a frozen dataclass whose metadata holds the
value's type (fastadv.config.spec). The validation schemas (fastadv.config.params.schema), the JSON schema of
params.yaml (fastadv.config.schema) and the typed resolved config (fastadv.config.run_config) are all derived from
these classes; the values and the comments saying what each means live in params.yaml. Torch-free.
"""
from __future__ import annotations

from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any, Mapping

from fastadv.config.spec import _BOOL, _STR, ListSpec, RecordSpec, _choice, _float, _int, key, Spec
from fastadv.data.registry import DATASETS
from fastadv.methods import registry as method_registry
from fastadv.models.registry import MODELS
from fastadv.units import eps_absolute

PRECISIONS = ("fp32", "fp16", "bf16")
DEVICES = ("auto", "cpu", "cuda")
PROTOCOLS = ("pgd50_10", "wong_pgd50_10", "wong_imagenet_pgd50_10")
OBJECTIVES = ("untargeted", "random_target")  # train.method.objective: the training attack's


def method_names() -> tuple[str, ...]:
    return tuple(sorted(method_registry.specs()))


def _frozen(value: Any) -> Any:
    """Read-only view of nested mappings (a frozen dataclass only stops its own attributes changing)."""
    if isinstance(value, Mapping):
        return MappingProxyType({k: _frozen(v) for k, v in value.items()})
    if isinstance(value, list):
        return tuple(_frozen(v) for v in value)
    return value


def thawed(value: Any) -> Any:
    """Plain dicts and lists again, e.g. to store or to validate."""
    if isinstance(value, Mapping):
        return {k: thawed(v) for k, v in value.items()}
    if isinstance(value, tuple):
        return [thawed(v) for v in value]
    return value


class Section:
    """A flat section of the config: one field per key, each with its type (``schema()``)."""

    @classmethod
    def schema(cls) -> dict:
        return {f.name: f.metadata["spec"] for f in fields(cls)}

    @classmethod
    def from_dict(cls, d: Mapping):
        """Typed from an already validated dict (fastadv.config.run_config validates first)."""
        return cls(**{f.name: _frozen(d[f.name]) for f in fields(cls)})

    def to_dict(self) -> dict:
        return {f.name: thawed(getattr(self, f.name)) for f in fields(self)}


@dataclass(frozen=True)
class DataConfig(Section):
    dataset: str = key(_choice(*DATASETS))
    root: str = key(_STR)
    subset: int | None = key(_int(min=1, optional=True))
    subset_mode: str = key(_choice("first", "random"))
    augment: bool = key(_BOOL)
    # Resolution phases (Wong et al.'s ImageNet recipe), in order: each ends at an epoch and reads the copies resized
    # to a shorter side (null: the original images) with its own crop and global batch.
    phases: tuple | None = key(ListSpec(RecordSpec({"epochs": _int(min=1), "images": _int(min=1, optional=True),
                                                    "crop": _int(min=1), "batch_size": _int(min=1)}), optional=True))


@dataclass(frozen=True)
class ModelConfig(Section):
    name: str = key(_choice(*MODELS))
    width: int = key(_int(min=1))
    normalize: bool = key(_BOOL)


@dataclass(frozen=True)
class MethodConfig:
    """``train.method``: the method, ε, the parity switches, and every method's parameter block (kept so the
    stored config is the one resolved; :attr:`params` is the chosen method's). Its keys come from the method
    registry (:meth:`schema`): each method's file declares its parameters."""

    name: str
    eps: float                            # as written: units of 1/255
    blocks: Mapping[str, Mapping] = field(default_factory=lambda: MappingProxyType({}))
    clamp_in_graph: bool = False
    extra_clean_forward: bool = False
    objective: str = "untargeted"

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
    def schema(cls) -> dict:
        """The method's name and ε, one section per method with the parameters its file declares, and the
        switches of parity with the official code."""
        out = {
            "name": _choice(*method_names()),
            # ε in units of 1/255; above half the pixel range nothing is "adversarial".
            "eps": _float(min=0, max=128, min_exclusive=True),
        }
        for name, d in method_registry.specs().items():
            if d.params:
                out[name] = {k: p.spec() for k, p in d.params.items()}
        return {**out, "clamp_in_graph": _BOOL, "extra_clean_forward": _BOOL,
                "objective": _choice(*OBJECTIVES)}

    @classmethod
    def from_dict(cls, d: Mapping) -> "MethodConfig":
        switches = ("name", "eps", "clamp_in_graph", "extra_clean_forward", "objective")
        return cls(d["name"], d["eps"], {k: v for k, v in d.items() if k not in switches},
                   d.get("clamp_in_graph", False), d.get("extra_clean_forward", False),
                   d.get("objective", "untargeted"))  # a run from before the switch attacked untargeted

    def to_dict(self) -> dict:
        return {"name": self.name, "eps": self.eps, **thawed(self.blocks),
                "clamp_in_graph": self.clamp_in_graph, "extra_clean_forward": self.extra_clean_forward,
                "objective": self.objective}


@dataclass(frozen=True)
class OptimConfig(Section):
    name: str = key(_choice("sgd", "adam"))
    epochs: int = key(_int(min=1))
    batch_size: int | None = key(_int(min=1, optional=True))
    lr_schedule: str = key(_choice("cyclic", "piecewise", "constant", "interpolated"))
    lr_max: float = key(_float(min=0, min_exclusive=True))
    lr_peak: float = key(_float(min=0, max=1, min_exclusive=True))
    lr_epochs: tuple | None = key(ListSpec(_float(min=0), optional=True))
    lr_values: tuple | None = key(ListSpec(_float(min=0), optional=True))
    momentum: float = key(_float(min=0, max=1))
    weight_decay: float = key(_float(min=0))
    no_decay_on_batchnorm: bool = key(_BOOL)
    warmup_epochs: float = key(_float(min=0))
    drop_last: bool = key(_BOOL)


@dataclass(frozen=True)
class MonitorConfig(Section):
    every_iterations: int = key(_int(min=0))
    test_points: int = key(_int(min=1))
    train_points: int = key(_int(min=1))
    pgd_steps: int = key(_int(min=1))
    batch_size: int = key(_int(min=1))
    co_pgd_ratio: float = key(_float(min=0, max=1))
    co_min_gap: float = key(_float(min=0, max=1))
    co_alpha: float = key(_float(min=0, max=1, min_exclusive=True))
    learned_clean_ratio: float = key(_float(min=0))
    best_by: str = key(_choice("pgd", "clean"))


@dataclass(frozen=True)
class RuntimeConfig(Section):
    seed: int = key(_int(min=0))
    device: str = key(_choice(*DEVICES))
    threads: int = key(_int(min=0))
    precision: str = key(_choice(*PRECISIONS))
    channels_last: bool = key(_BOOL)
    double_backward: str = key(_choice("native", "fused"))
    checkpoint_every: int = key(_int(min=0))
    progress: str = key(_choice("auto", "always", "never"))
    sync_batchnorm: bool = key(_BOOL)
    dist_timeout_s: int = key(_int(min=1))
    dvclive: bool = key(_BOOL)
    loader_workers: int = key(_int(min=0))


# The `train` section's sections, in params.yaml's order; `method` is typed by the method registry.
TRAIN_SECTIONS = {"data": DataConfig, "model": ModelConfig, "method": MethodConfig, "optim": OptimConfig,
                  "monitor": MonitorConfig, "runtime": RuntimeConfig}


@dataclass(frozen=True)
class EvalSettings(Section):
    """The ``evaluate`` section: the paper's final evaluation (fastadv.config.run_config.EvalConfig validates)."""

    n_points: int | None = key(_int(min=1, optional=True))
    protocol: str = key(_choice(*PROTOCOLS))
    also_protocol: str | None = key(Spec("choice", choices=PROTOCOLS, optional=True))
    also_n_points: int | None = key(_int(min=1, optional=True))
    crop: int | None = key(_int(min=1, optional=True))
    restart_rule: str = key(_choice("worst_case", "both"))
    autoattack: bool = key(_BOOL)
    multitargeted: bool = key(_BOOL)
    multitargeted_targets: int = key(_int(min=1))
    multitargeted_restarts: int = key(_int(min=1))
    multitargeted_steps: int = key(_int(min=1))
    multitargeted_schedule: str = key(_choice("constant", "piecewise"))
    targeted_steps: tuple | None = key(ListSpec(_int(min=1), optional=True))
    targeted_alpha: float = key(_float(min=0, min_exclusive=True))
    batch_size: int = key(_int(min=1))
    autoattack_batch_size: int = key(_int(min=1))
    seed: int = key(_int(min=0))
    full_clean: bool = key(_BOOL)
    device: str = key(_choice(*DEVICES))
    threads: int = key(_int(min=0))


@dataclass(frozen=True)
class Resources(Section):
    """Scheduler resources of workflow jobs (Snakemake/SLURM); not hyperparameters."""

    gpu: int = key(_int(min=0))
    ranks: int = key(_int(min=1))
    train_threads: int = key(_int(min=1))
    eval_threads: int = key(_int(min=1))
    train_mem_mb: int = key(_int(min=1))
    train_runtime: int = key(_int(min=1))
    eval_mem_mb: int = key(_int(min=1))
    eval_runtime: int = key(_int(min=1))
