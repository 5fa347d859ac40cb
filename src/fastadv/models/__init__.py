"""Model registry. Every model takes NCHW inputs in [0,1] and holds its own normalisation."""
from __future__ import annotations

from functools import partial

from torch import nn

from fastadv.errors import unknown_choice
from fastadv.models.cnn import MnistCNN, OneLayerCNN
from fastadv.models.preact_resnet import PreActResNet18
from fastadv.models.resnet50 import ResNet50
from fastadv.models.init import init_weights

REGISTRY = {
    "preact_resnet18": PreActResNet18,
    "preact_resnet18_wong": partial(PreActResNet18, wong=True),
    "preact_resnet18_final_bn": partial(PreActResNet18, final_bn=True),
    "mnist_cnn": MnistCNN,
    "one_layer_cnn": OneLayerCNN,
    "resnet50": ResNet50,
}


def build_model(name: str, *, width: int, num_classes: int, in_shape: tuple, mean=None, std=None) -> nn.Module:
    """Construct a registered model. ``mean``/``std`` None means no input normalisation."""
    if name not in REGISTRY:
        raise unknown_choice("model", name, REGISTRY)
    return REGISTRY[name](width=width, num_classes=num_classes, in_shape=tuple(in_shape), mean=mean, std=std)


__all__ = ["REGISTRY", "build_model", "init_weights", "PreActResNet18", "MnistCNN", "OneLayerCNN", "ResNet50"]
