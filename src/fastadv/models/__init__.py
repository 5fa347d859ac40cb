"""Models: every one takes NCHW inputs in [0,1] and holds its own normalisation. The registry
(fastadv.models.registry) declares each architecture once; this package imports torch only when a model is
built or one of its classes is named (PEP 562), so the config and the workflow read the registry without it."""
from __future__ import annotations

import importlib

from fastadv.models.registry import MODELS, SPECS, ModelSpec, build_model, model_spec

_LAZY = {"init_weights": "fastadv.models.init", "PreActResNet18": "fastadv.models.preact_resnet",
         "MnistCNN": "fastadv.models.cnn", "OneLayerCNN": "fastadv.models.cnn", "ResNet50": "fastadv.models.resnet50"}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'fastadv.models' has no attribute {name!r}")


__all__ = ["MODELS", "SPECS", "ModelSpec", "build_model", "model_spec", *_LAZY]
