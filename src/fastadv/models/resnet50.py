"""ResNet-50 (He et al., CVPR 2016; torchvision's implementation), the ImageNet model of Wong et al.
(ICLR 2020) and of the GradAlign paper's ImageNet experiment, with its own input normalisation."""
from __future__ import annotations

from torch import nn

from fastadv.models.normalize import Normalize


class ResNet50(nn.Module):
    """torchvision ResNet-50 behind :class:`Normalize`. ``width``: channels per group of the
    bottleneck convolutions (torchvision's ``width_per_group``; 64 = the standard ResNet-50).

    torchvision's own initialisation is kept (``own_init``), as in Wong et al. ReLUs are made
    non-inplace: GradAlign-FD's probe forward replays ReLU masks through forward hooks, which
    needs each ReLU's input intact.
    """

    own_init = True

    def __init__(self, width: int = 64, num_classes: int = 1000, in_shape=(3, 224, 224), mean=None, std=None):
        super().__init__()
        from torchvision.models import resnet50

        self.normalize = Normalize(in_shape[0], mean, std)
        self.net = resnet50(weights=None, num_classes=num_classes, width_per_group=width)
        for m in self.net.modules():
            if isinstance(m, nn.ReLU):
                m.inplace = False

    def forward(self, x):
        return self.net(self.normalize(x))
