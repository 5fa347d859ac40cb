"""Which training images a run uses (``data.subset``, ``data.subset_mode``)."""
from __future__ import annotations

import torch


def subset_indices(n: int, subset: int | None, mode: str, seed: int) -> torch.Tensor:
    """First-N or seeded random N indices (sorted, so order stays the dataset's)."""
    if subset is None or subset >= n:
        return torch.arange(n)
    if mode == "first":
        return torch.arange(subset)
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(n, generator=g)[:subset].sort().values
