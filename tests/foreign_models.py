"""Re-implementations of other code bases' models with their key layouts, to build checkpoints exactly as
each source writes them (tests/test_zoo.py). Written from the sources' files:

* OfficialPreActResNet / OfficialCNN: tml-epfl/understanding-fast-adv-training models.py (PreActResNet with
  ``model_preact_hl1`` registering conv1 and layer1[0].bn1 a second time, μ/σ plain tensors; CNN with
  ``_model`` = [conv, ReLU, Flatten, Linear] and ``model_preact_hl1`` = [conv]); ``width`` generalises its
  hard-coded 64 so the tests stay small.
* WongPreActResNet: locuslab/fast_adversarial CIFAR10/preact_resnet.py (``final_bn``: the ``bn`` of commit
  e9ccb17), normalisation outside the model (CIFAR10/utils.py), or as RobustBench's Wong2020FastNet with
  ``mu``/``sigma`` buffers.
* robustbench_resnet50: RobustBench's ``normalize_model(resnet50(), mu, sigma)`` (ImageNormalizer + model).
"""
from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn


class _Block(nn.Module):
    def __init__(self, cin, cout, stride):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(cin)
        self.conv1 = nn.Conv2d(cin, cout, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1, bias=False)
        if stride != 1 or cin != cout:
            self.shortcut = nn.Sequential(nn.Conv2d(cin, cout, 1, stride, bias=False))

    def forward(self, x):
        out = F.relu(self.bn1(x))
        sc = self.shortcut(x) if hasattr(self, "shortcut") else x
        return self.conv2(F.relu(self.bn2(self.conv1(out)))) + sc


class _PreAct(nn.Module):
    def __init__(self, width=64, n_cls=10, final_bn=False):
        super().__init__()
        self.conv1 = nn.Conv2d(3, width, 3, 1, 1, bias=False)
        cin = width
        for i, (mult, stride) in enumerate(((1, 1), (2, 2), (4, 2), (8, 2))):
            setattr(self, f"layer{i + 1}", nn.Sequential(_Block(cin, width * mult, stride),
                                                         _Block(width * mult, width * mult, 1)))
            cin = width * mult
        if final_bn:
            self.bn = nn.BatchNorm2d(cin)
        self.linear = nn.Linear(cin, n_cls)

    def features(self, x):
        out = self.layer4(self.layer3(self.layer2(self.layer1(self.conv1(x)))))
        if hasattr(self, "bn"):
            out = F.relu(self.bn(out))
        return self.linear(F.avg_pool2d(out, 4).view(x.shape[0], -1))


class OfficialPreActResNet(_PreAct):
    def __init__(self, width=64, n_cls=10):
        super().__init__(width, n_cls)
        self.mu, self.std = torch.zeros(1, 3, 1, 1), torch.ones(1, 3, 1, 1)  # plain tensors: not in the state dict
        self.model_preact_hl1 = nn.Sequential(nn.Identity(), self.conv1, self.layer1[0].bn1)

    def forward(self, x):
        return self.features((x - self.mu) / self.std)


class OfficialCNN(nn.Module):
    def __init__(self, n_filters=4, n_cls=10, shape=(3, 32, 32)):
        super().__init__()
        c, h, w = shape
        self._model = nn.Sequential(nn.Conv2d(c, n_filters, 3, 1, 1), nn.ReLU(), nn.Flatten(),
                                    nn.Linear(n_filters * h * w, n_cls))
        self.model_preact_hl1 = nn.Sequential(self._model[0])

    def forward(self, x):
        return self._model(x)


class WongPreActResNet(_PreAct):
    """Their model; ``buffers``: RobustBench's Wong2020FastNet (μ, σ as buffers ``mu``, ``sigma``)."""
    MEAN, STD = (0.4914, 0.4822, 0.4465), (0.2471, 0.2435, 0.2616)

    def __init__(self, width=64, final_bn=False, buffers=False):
        super().__init__(width, 10, final_bn)
        self.buffers_inside = buffers
        if buffers:
            self.register_buffer("mu", torch.tensor(self.MEAN).view(1, 3, 1, 1))
            self.register_buffer("sigma", torch.tensor(self.STD).view(1, 3, 1, 1))

    def forward(self, x):  # without buffers their code standardises the batch before the model (utils.py)
        mu, sigma = torch.tensor(self.MEAN).view(1, 3, 1, 1), torch.tensor(self.STD).view(1, 3, 1, 1)
        return self.features((x - mu) / sigma)


class _ImageNormalizer(nn.Module):
    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer("mean", torch.as_tensor(mean).view(1, 3, 1, 1))
        self.register_buffer("std", torch.as_tensor(std).view(1, 3, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std


IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def robustbench_resnet50(num_classes=1000, width=64):
    from torchvision.models import resnet50

    return nn.Sequential(OrderedDict([("normalize", _ImageNormalizer(IMAGENET_MEAN, IMAGENET_STD)),
                                      ("model", resnet50(num_classes=num_classes, width_per_group=width))]))


def randomize(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random weights and batch-norm statistics (so eval-mode BN is not the identity), eval mode."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, t in model.state_dict().items():
            if t.dtype.is_floating_point and not name.endswith(("mu", "sigma", "normalize.mean", "normalize.std")):
                if name.endswith("running_var"):
                    t.copy_(torch.rand(t.shape, generator=g) + 0.5)
                else:
                    t.copy_(torch.randn(t.shape, generator=g) * 0.2)
    return model.eval()


def write_smoke_zoo(root) -> dict:
    """The smoke scale's zoo files (params.yaml scales.smoke.zoo), each written as its source writes it, with
    random weights at width 8; returns {listed name: the source module} (eval mode, float32)."""
    from pathlib import Path

    root = Path(root)
    for sub in ("official", "wong", "cifar10/Linf"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    last, best = randomize(OfficialPreActResNet(8), 1), randomize(OfficialPreActResNet(8), 2)
    torch.save({"last": last.state_dict(), "best": best.state_dict()}, root / "official/preact_eps8.pth")
    cnn = randomize(OfficialCNN(4), 3)
    torch.save({"last": cnn.state_dict(), "best": cnn.state_dict()}, root / "official/cnn_eps10.pth")
    wong = randomize(WongPreActResNet(8, final_bn=True), 4)
    torch.save({"module." + k: v for k, v in wong.state_dict().items()}, root / "wong/model.pth")
    rb_last, rb_best = randomize(OfficialPreActResNet(8), 5), randomize(OfficialPreActResNet(8), 6)
    torch.save({"last": rb_last.state_dict(), "best": rb_best.state_dict()},
               root / "cifar10/Linf/Andriushchenko2020Understanding.pt")
    return {"official_preact": best, "official_cnn": cnn, "wong_cifar10": wong,
            "Andriushchenko2020Understanding": rb_last}


if __name__ == "__main__":
    import sys

    write_smoke_zoo(sys.argv[1] if len(sys.argv) > 1 else "models/smoke")
