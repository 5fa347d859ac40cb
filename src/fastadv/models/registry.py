"""The model registry: each architecture a run can train declared once, as data (a :class:`ModelSpec`), like
the methods (fastadv.methods.registry) and the datasets (fastadv.data.registry). The valid ``model.name`` values
and the class each builds derive from it. Torch-free: the config and the workflow read it; the class named by
``impl`` is imported when a model is built.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from fastadv.errors import unknown_choice
from fastadv.lazy import import_object


@dataclass(frozen=True)
class ModelSpec:
    """An architecture as data: ``impl``, ``"module:Class"`` of an ``nn.Module`` taking ``width``,
    ``num_classes``, ``in_shape``, ``mean`` and ``std`` (None: no input normalisation) and [0,1] inputs;
    ``kwargs``: fixed arguments of this variant."""

    name: str
    summary: str
    impl: str
    kwargs: dict = field(default_factory=dict)


SPECS = {s.name: s for s in (
    ModelSpec("preact_resnet18", "PreActResNet-18 of the GradAlign code (He et al. 2016): the paper's CIFAR-10/SVHN "
              "model", "fastadv.models.preact_resnet:PreActResNet18"),
    ModelSpec("preact_resnet18_wong", "Kuang Liu's PreActResNet-18 (shortcut on the activated input, final BN): "
              "N-FGSM's and ELLE's code", "fastadv.models.preact_resnet:PreActResNet18", {"wong": True}),
    ModelSpec("preact_resnet18_final_bn", "Wong et al.'s CIFAR-10 PreActResNet-18 (final BN + ReLU before the pool)",
              "fastadv.models.preact_resnet:PreActResNet18", {"final_bn": True}),
    ModelSpec("mnist_cnn", "the MNIST CNN of Wong et al. 2020 (two conv, two linear layers)",
              "fastadv.models.cnn:MnistCNN"),
    ModelSpec("one_layer_cnn", "the single-layer CNN of the paper's Section 3 (Lemma 2, Figs. 5-7, 11)",
              "fastadv.models.cnn:OneLayerCNN"),
    ModelSpec("resnet50", "torchvision's ResNet-50 (He et al. 2016): Wong et al.'s ImageNet model",
              "fastadv.models.resnet50:ResNet50"),
)}
MODELS = tuple(SPECS)


def model_spec(name: str) -> ModelSpec:
    """The spec of ``name``; an unknown name is a one-line error listing the valid ones."""
    if name not in SPECS:
        raise unknown_choice("model", name, SPECS)
    return SPECS[name]


def build_model(name: str, *, width: int, num_classes: int, in_shape: tuple, mean=None, std=None):
    """Construct a registered model (an ``nn.Module``). ``mean``/``std`` None means no input normalisation."""
    spec = model_spec(name)
    return import_object(spec.impl)(width=width, num_classes=num_classes, in_shape=tuple(in_shape), mean=mean,
                                    std=std, **spec.kwargs)
