"""A global batch split over data-parallel ranks, and the per-example random draws that keep it exact.

Under data-parallel training (fastadv.training.distributed) each rank trains on one contiguous shard of the
single-process run's batch. For the ranks together to compute what one process would, every per-example
random draw (a method's noise η, a random start δ₀, ELLE's interpolation weights) must be the values the
single process would draw for those examples: each rank draws for the whole batch, from the same generator,
and keeps its rows. Likewise a mean over the examples a mask selects (GradAlign's, over the examples whose
input gradients are non-zero) divides by the whole batch's count (:func:`mean_of_selected`). Outside
:func:`batch_shard` (one process) nothing changes: ``draw(n)`` and ``sum / count`` as before. Torch-free to
import.
"""
from __future__ import annotations

from contextlib import contextmanager
from contextvars import ContextVar

_SHARD: ContextVar[tuple[int, int] | None] = ContextVar("fastadv_batch_shard", default=None)


@contextmanager
def batch_shard(offset: int, total: int):
    """Inside: this process's batch is rows ``offset`` … of a global batch of ``total`` examples."""
    token = _SHARD.set((offset, total))
    try:
        yield
    finally:
        _SHARD.reset(token)


def per_example(draw, n: int):
    """``draw(m)`` makes random values for m examples (first dimension m); returns this process's ``n`` rows."""
    shard = _SHARD.get()
    if shard is None:
        return draw(n)
    offset, total = shard
    return draw(total)[offset:offset + n]


def shard_bounds(total: int, rank: int, world: int) -> tuple[int, int]:
    """(offset, size) of rank ``rank``'s contiguous shard of ``total`` examples: sizes differ by at most one,
    the first ``total % world`` ranks taking the extra example (torch.tensor_split's rule)."""
    base, extra = divmod(total, world)
    return rank * base + min(rank, extra), base + (rank < extra)


def mean_of_selected(total, count, n: int):
    """The mean of per-example terms over the examples a mask selects, as this process's part of it.

    ``total``: the sum of this process's selected terms (a tensor); ``count``: how many it selected (a 0-d
    integer tensor); ``n``: its examples. Alone: ``total / max(count, 1)``. On a shard of a global batch of B
    examples the training loop weights the loss by n·W/B and DDP averages over the W ranks, so the shard's
    part must be ``total · (B/n) / max(V, 1)``, V the count over all ranks (all-reduced here): the ranks'
    gradients then add up to the single process's whatever the selected examples' spread over the ranks
    (the fp16 underflow case the mask exists for need not be even)."""
    shard = _SHARD.get()
    if shard is None:
        return total / count.clamp_min(1)
    import torch.distributed as dist

    count = count.detach().clone()
    dist.all_reduce(count)
    return total * (shard[1] / n) / count.clamp_min(1)
