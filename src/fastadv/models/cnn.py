"""Small CNNs: the MNIST model of Wong et al. (2020) and the paper's one-hidden-layer CNN."""
from __future__ import annotations

from torch import nn

from .normalize import Normalize


class MnistCNN(nn.Module):
    """Wong, Rice & Kolter, "Fast is better than free" (ICLR 2020), MNIST model:
    conv 16 4×4 stride 2 → ReLU → conv 32 4×4 stride 2 → ReLU → fc 100 → ReLU → fc 10.
    ``width`` scales the channel counts (16 = published)."""

    def __init__(self, width: int = 16, num_classes: int = 10, in_shape: tuple = (1, 28, 28), mean=None, std=None):
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(
            Normalize(c, mean, std),
            nn.Conv2d(c, width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Conv2d(width, 2 * width, 4, stride=2, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(2 * width * (h // 4) * (w // 4), 100), nn.ReLU(),
            nn.Linear(100, num_classes),
        )

    def forward(self, x):
        return self.net(x)


class OneLayerCNN(nn.Module):
    """The single-hidden-layer CNN of the paper's analysis (Andriushchenko & Flammarion 2020,
    Sec. 3; models.CNN with n_conv=1): conv ``width`` 3×3 stride 1 pad 1 → ReLU → linear."""

    def __init__(self, width: int = 4, num_classes: int = 10, in_shape: tuple = (3, 32, 32), mean=None, std=None):
        super().__init__()
        c, h, w = in_shape
        self.net = nn.Sequential(
            Normalize(c, mean, std),
            nn.Conv2d(c, width, 3, stride=1, padding=1), nn.ReLU(),
            nn.Flatten(),
            nn.Linear(width * h * w, num_classes),
        )

    def forward(self, x):
        return self.net(x)
