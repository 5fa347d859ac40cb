"""Other code bases' checkpoints of our architectures: their key layouts, mapped onto ours.

The layouts (read from each source; the tests rebuild each source's module with its key names):

* the official GradAlign code (tml-epfl/understanding-fast-adv-training, ``models.py``): PreActResNet-18 as
  ``conv1``, ``layer{1-4}.{0,1}.{bn1,conv1,bn2,conv2}``, ``layer{2-4}.0.shortcut.0`` (a Sequential),
  ``linear``, plus ``model_preact_hl1.{1,2}.*``, a second registration of ``conv1`` and
  ``layer1.0.bn1`` (the same tensors); its normalisation (μ = 0, σ = 1) holds plain tensors, not
  buffers, so it is not in the file. The single-layer CNN (``CNN`` with ``n_conv=1``): ``_model.0`` the
  convolution, ``_model.3`` the linear layer, ``model_preact_hl1.0`` the convolution again.
* Wong et al. (locuslab/fast_adversarial, ``CIFAR10/preact_resnet.py``): the same PreActResNet-18 keys,
  with ``bn`` (a final BN + ReLU) since commit e9ccb17; trained under ``DataParallel`` (``module.``
  prefixes); normalisation outside the model. ImageNet (``ImageNet/main_fast.py``): torchvision's
  ResNet-50 under ``DataParallel``, saved as ``{'state_dict': …, 'epoch', 'arch', 'best_prec1', 'optimizer'}``.
* RobustBench (``robustbench/utils.py: load_model``): the source's file, ``{'state_dict': …}`` or a plain
  state dict (``{'last', 'best'}`` for Andriushchenko2020Understanding); ``Wong2020Fast`` registers its
  normalisation as buffers ``mu``/``sigma``; ImageNet models are ``normalize_model`` Sequentials
  (``normalize.mean``, ``normalize.std``, ``model.*``).

Ours (fastadv.models): ``normalize.{mean,std}``, ``conv1``, ``layers.{0-7}.…``, ``layers.{2,4,6}.shortcut``,
``final.0`` (the final BN), ``linear``; ``net.1``/``net.4`` for the CNN; ``net.*`` for ResNet-50.
"""
from __future__ import annotations

import re

import torch

from fastadv.errors import FastAdvError

PREFIXES = ("module.", "model.")  # DataParallel's, RobustBench's normalize_model
NORMALIZATION_KEYS = (("mu", "sigma"), ("normalize.mean", "normalize.std"), ("mean", "std"))
TIED = {"model_preact_hl1.1.": "conv1.", "model_preact_hl1.2.": "layer1.0.bn1.", "model_preact_hl1.0.": "_model.0."}
LAYOUTS = "PreActResNet-18 (conv1, layer1.0.bn1, …, linear), the official single-layer CNN (_model.0, _model.3), " \
          "torchvision ResNet-50 (conv1, layer1.0.conv3, fc)"


def strip_prefixes(state: dict) -> dict:
    """Keys without DataParallel's ``module.`` and RobustBench's ``model.`` (leading only)."""
    out = {}
    for k, v in state.items():
        for p in PREFIXES:
            if k.startswith(p):
                k = k[len(p):]
        out[k] = v
    return out


def pop_normalization(state: dict) -> tuple[list | None, list | None]:
    """The (mean, std) the file stores as buffers, removed from ``state``; (None, None) when it stores none."""
    for m, s in NORMALIZATION_KEYS:
        if m in state and s in state:
            return state.pop(m).flatten().tolist(), state.pop(s).flatten().tolist()
    return None, None


def drop_tied(state: dict) -> dict:
    """Remove the official code's second registrations (``model_preact_hl1``), after checking they are the
    very tensors they duplicate (a file where they differ was edited by hand: refuse it)."""
    out = {}
    for k, v in state.items():
        prefix = next((p for p in TIED if k.startswith(p)), None)
        if prefix is None:
            out[k] = v
            continue
        twin = TIED[prefix] + k[len(prefix):]
        if twin in state and not torch.equal(state[twin], v):
            raise FastAdvError(f"key {k!r} should equal {twin!r} (the official models.py registers it twice) "
                               "but differs")
    return out


def _preact(state: dict) -> tuple[dict, dict]:
    out = {}
    for k, v in state.items():
        m = re.match(r"layer([1-4])\.([01])\.(.*)$", k)
        if m:
            rest = m[3].replace("shortcut.0.", "shortcut.")
            k = f"layers.{2 * (int(m[1]) - 1) + int(m[2])}.{rest}"
        elif k.startswith("bn."):
            k = "final.0." + k[3:]
        out[k] = v
    name = "preact_resnet18_final_bn" if "bn.weight" in state else "preact_resnet18"
    w = state["conv1.weight"]
    spec = {"name": name, "width": w.shape[0], "num_classes": state["linear.weight"].shape[0],
            "in_shape": [w.shape[1], 32, 32]}
    return spec, out


def _cnn(state: dict) -> tuple[dict, dict]:
    if any(k.startswith(("_model.2.", "_model.5.")) for k in state):
        raise FastAdvError("the official CNN with more than one convolution is not a fastadv model "
                           "(one_layer_cnn is its n_conv=1 case)")
    conv, lin = state["_model.0.weight"], state["_model.3.weight"]
    side = int(round((lin.shape[1] / conv.shape[0]) ** 0.5))
    spec = {"name": "one_layer_cnn", "width": conv.shape[0], "num_classes": lin.shape[0],
            "in_shape": [conv.shape[1], side, side]}
    out = {k.replace("_model.0.", "net.1.").replace("_model.3.", "net.4."): v for k, v in state.items()}
    return spec, out


def _resnet50(state: dict) -> tuple[dict, dict]:
    spec = {"name": "resnet50", "width": state["layer1.0.conv1.weight"].shape[0],
            "num_classes": state["fc.weight"].shape[0], "in_shape": [3, 224, 224]}
    return spec, {"net." + k: v for k, v in state.items()}


def convert_state(state: dict) -> tuple[dict, dict, tuple]:
    """A foreign state dict → (our model spec without normalisation, our state dict without the
    normalisation buffers, (mean, std) the file holds or (None, None))."""
    state = drop_tied(strip_prefixes(state))
    mean, std = pop_normalization(state)
    if "layer1.0.conv3.weight" in state and "fc.weight" in state:
        spec, out = _resnet50(state)
    elif "layer1.0.bn1.weight" in state and "linear.weight" in state:
        spec, out = _preact(state)
    elif "_model.0.weight" in state and "_model.3.weight" in state:
        spec, out = _cnn(state)
    else:
        shown = ", ".join(list(state)[:4])
        raise FastAdvError(f"unrecognised layout of weights (first keys: {shown}); known: {LAYOUTS}")
    return spec, out, (mean, std)


def describe(obj) -> str | None:
    """Which other code base a loaded checkpoint comes from (and so which ``fastadv import --from`` reads it),
    or None when it looks like none of them."""
    if not isinstance(obj, dict) or not obj:
        return None
    if "last" in obj and isinstance(obj["last"], dict):
        return "official"
    inner = obj.get("state_dict") if isinstance(obj.get("state_dict"), dict) else obj
    keys = [k for k in inner if isinstance(k, str)]
    if any(k.startswith("module.") for k in keys) or "state_dict" in obj:
        return "wong"
    if any(k.startswith(("layer1.0.", "_model.0.", "model.")) for k in keys):
        return "official"
    return None
