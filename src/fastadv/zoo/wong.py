"""Wong, Rice & Kolter, "Fast is better than free" (ICLR 2020), locuslab/fast_adversarial:
CIFAR-10 ``model.pth`` = the PreActResNet-18's state dict (``torch.save(best_state_dict, …)`` in
``CIFAR10/train_fgsm.py``; ``module.`` prefixes when trained under DataParallel), inputs standardised outside
the model with ``cifar10_mean``/``cifar10_std`` (``CIFAR10/utils.py``); ImageNet: torchvision's ResNet-50 under
DataParallel, ``{'state_dict': …, 'epoch', 'arch', 'best_prec1', 'optimizer'}`` (``ImageNet/main_fast.py``),
standardised with the ImageNet statistics (``configs_fast_*.yml``) and evaluated on a 288-px centre crop
(``configs_fast_4px_evaluate.yml``, RobustBench's ``Crop288``)."""
from __future__ import annotations

from fastadv.errors import FastAdvError
from fastadv.training.checkpoint import load_plain

CIFAR10 = {"mean": [0.4914, 0.4822, 0.4465], "std": [0.2471, 0.2435, 0.2616], "eval_crop": None}
IMAGENET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225], "eval_crop": 288}


def read(src: str, which: str = "last", **_) -> dict:
    if which != "last":
        raise FastAdvError(f"Wong et al.'s files hold one model: --which {which!r} does not apply; valid: last")
    obj = load_plain(src)
    state = obj.get("state_dict") if isinstance(obj, dict) and "state_dict" in obj else obj
    if not isinstance(state, dict):
        raise FastAdvError(f"{src!r} holds a {type(state).__name__}, not Wong et al.'s state dict")
    imagenet = any(k.endswith("layer1.0.conv3.weight") for k in state)
    return {"state": state, "eps": None, "kind": "final", "dataset": "imagenet" if imagenet else "cifar10",
            **(IMAGENET if imagenet else CIFAR10)}
