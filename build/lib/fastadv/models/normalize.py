from __future__ import annotations

import torch
from torch import nn


class Normalize(nn.Module):
    """(x - mean) / std as the model's first layer, so attacks work in [0,1] pixel space.

    With mean=None the layer is the identity: the GradAlign code trains with
    μ = 0, σ = 1 (models.py), which is our paper-faithful default.
    """

    def __init__(self, channels: int, mean=None, std=None):
        super().__init__()
        m = torch.zeros(channels) if mean is None else torch.tensor(mean, dtype=torch.float32)
        s = torch.ones(channels) if std is None else torch.tensor(std, dtype=torch.float32)
        self.register_buffer("mean", m.view(1, -1, 1, 1))
        self.register_buffer("std", s.view(1, -1, 1, 1))

    def forward(self, x):
        return (x - self.mean) / self.std
