"""PreActResNet-18 (He et al. 2016, "Identity Mappings in Deep Residual Networks").

As in the GradAlign code (models.py): conv3×3 → width, four stages of two
pre-activation blocks (width·1, 2, 4, 8 channels, strides 1, 2, 2, 2), 1×1 conv
shortcut on the block input x when the shape changes, no conv bias, **no final
BN+ReLU** before pooling, 4×4 average pool, linear head. width=64 is the paper's.

``wong=True`` (model ``preact_resnet18_wong``; the name is historical): Kuang Liu's PreActResNet
(kuangliu/pytorch-cifar), the variant N-FGSM's and ELLE's code train: the shortcut takes the activated
input relu(bn(x)), and a final BN + ReLU precedes the pooling. Wong et al.'s own block takes x
(locuslab/fast_adversarial CIFAR10/preact_resnet.py: ``shortcut = self.shortcut(x)``), as below.

``final_bn=True`` without ``wong`` (model ``preact_resnet18_final_bn``): Wong et al.'s own CIFAR-10 model
(locuslab/fast_adversarial, CIFAR10/preact_resnet.py since commit e9ccb17): the GradAlign block (shortcut
on x) with a final BN + ReLU before the pooling; its first release (and RobustBench's ``Wong2020Fast``)
has no final BN, i.e. is ``preact_resnet18`` with their input standardisation.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import nn

from fastadv.models.normalize import Normalize


class PreActBlock(nn.Module):
    def __init__(self, in_planes: int, planes: int, stride: int, wong: bool = False):
        super().__init__()
        self.wong = wong
        self.bn1 = nn.BatchNorm2d(in_planes)
        self.conv1 = nn.Conv2d(in_planes, planes, 3, stride, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        # Modules, not F.relu: gradalign_fd replays their activation masks through hooks.
        self.relu1, self.relu2 = nn.ReLU(), nn.ReLU()
        self.shortcut = None
        if stride != 1 or in_planes != planes:
            self.shortcut = nn.Conv2d(in_planes, planes, 1, stride, bias=False)

    def forward(self, x):
        out = self.relu1(self.bn1(x))
        # The shortcut takes x itself (not the activated x), as the GradAlign and Wong et al.'s code;
        # Kuang Liu's (wong=True): relu(bn(x)).
        shortcut = x if self.shortcut is None else self.shortcut(out if self.wong else x)
        out = self.conv1(out)
        out = self.conv2(self.relu2(self.bn2(out)))
        return out + shortcut


class PreActResNet18(nn.Module):
    def __init__(self, width: int = 64, num_classes: int = 10, in_shape: tuple = (3, 32, 32), mean=None, std=None,
                 wong: bool = False, final_bn: bool | None = None):
        super().__init__()
        final_bn = wong if final_bn is None else final_bn
        c = in_shape[0]
        self.normalize = Normalize(c, mean, std)
        self.conv1 = nn.Conv2d(c, width, 3, 1, 1, bias=False)
        layers, in_planes = [], width
        for mult, stride in ((1, 1), (2, 2), (4, 2), (8, 2)):
            planes = width * mult
            layers += [PreActBlock(in_planes, planes, stride, wong), PreActBlock(planes, planes, 1, wong)]
            in_planes = planes
        self.layers = nn.Sequential(*layers)
        self.final = nn.Sequential(nn.BatchNorm2d(in_planes), nn.ReLU()) if final_bn else nn.Identity()
        self.linear = nn.Linear(in_planes, num_classes)

    def forward(self, x):
        out = self.final(self.layers(self.conv1(self.normalize(x))))
        out = F.adaptive_avg_pool2d(out, 1).flatten(1)  # = avg_pool2d(out, 4) on 32×32 inputs
        return self.linear(out)
