"""Small CNNs: the MNIST model of Wong et al. (2020) and the paper's one-hidden-layer CNN."""
from __future__ import annotations

from torch import nn

from fastadv.models.normalize import Normalize


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

    @property
    def conv(self) -> nn.Conv2d:
        return self.net[1]

    def pre_activations(self, x):
        """The filters' feature maps before the ReLU, conv(x) + b (the maps of the paper's Fig. 7)."""
        return self.conv(self.net[0](x))

    def diagnostics(self) -> dict:
        """ℓ2 norm of each filter w_k (all input channels) and of its outgoing weights, the block of the
        linear layer that reads channel k (the paper's Fig. 6); k = 1 … width."""
        w = self.conv.weight.detach()
        lin = self.net[4].weight.detach()
        u = lin.view(lin.shape[0], w.shape[0], -1)  # Flatten is channel-major: feature = k·H·W + …
        out = {}
        for k in range(w.shape[0]):
            out[f"filter_norm_{k + 1}"] = float(w[k].norm())
            out[f"outgoing_norm_{k + 1}"] = float(u[:, k].norm())
        return out

    def snapshot(self) -> dict:
        """The filters (weights and biases): small enough to keep at every epoch end."""
        return {"conv_weight": self.conv.weight.detach().cpu().clone(), "conv_bias": self.conv.bias.detach().cpu().clone()}
