"""Data-parallel training on torch.distributed: one process per device, DistributedDataParallel (NCCL on GPUs,
gloo on CPUs), launched by ``torchrun --nproc_per_node=N -m fastadv train …`` (on one machine, or by SLURM on
several: docs/guide/many-gpus.md); a process started without torchrun's environment trains alone.

What a user can rely on (tests/test_distributed.py runs each on CPU with gloo):
- the config's ``optim.batch_size`` is the global batch: step t trains on the single-process run's batch t, rank r
  on its r-th contiguous shard (fastadv.shard.shard_bounds); per-example random draws are those of the single
  process (fastadv.shard), and with shards of unequal size each rank's loss is weighted by its share, so that
  DDP's average of the ranks' gradients is the single-process gradient. A model without batch norm therefore
  makes the single-process update up to float round-off (summation order).
- batch norm normalises per replica (each rank its shard, as Wong et al.'s DataParallel did), with rank 0's
  running statistics (DDP's buffer broadcast); ``runtime.sync_batchnorm`` normalises over the global batch
  (SyncBatchNorm; CUDA only).
- rank 0 writes every file, atomically; the monitoring statistics are computed alike on every rank from rank
  0's weights and buffers, so every rank takes the same decisions (divergence, stopping).
- SIGTERM/SIGUSR1 on any rank: every rank stops after the same step, rank 0 saves, all exit 75; the rerun
  resumes bit-exactly at the same world size (another world size is refused). Every rank reads the state itself:
  before the first step the ranks compare what they resumed (step and the file's SHA-256) and refuse to train
  on different states (a run folder that is not one shared folder for every node).
- a rank that dies: the others fail at their next collective (at once when its connection closes, at the
  latest after ``runtime.dist_timeout_s``) and exit non-zero with a one-line error.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from fastadv.errors import FastAdvError
from fastadv.methods.registry import spec_of, specs


@dataclass(frozen=True)
class Group:
    """This process's place among the data-parallel ranks (rank 0 of 1 when training alone)."""

    rank: int = 0
    world: int = 1
    backend: str | None = None

    @property
    def active(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files and prints."""
        return self.rank == 0

    def stamp(self) -> dict:
        return {"world_size": self.world, "backend": self.backend}


def slurm_environment(env=os.environ) -> dict:
    """torchrun's variables from those of a SLURM job step with several tasks (``srun --ntasks=N fastadv train …``,
    one process per device): rank and local rank from the task, the world from the step's task count, the
    rendezvous on the step's first node at a port derived from the job id (MASTER_ADDR/MASTER_PORT win when
    set). {} outside such a step, and when torchrun's variables are already there."""
    if "WORLD_SIZE" in env or int(env.get("SLURM_STEP_NUM_TASKS", "1")) <= 1 or "SLURM_PROCID" not in env:
        return {}
    import subprocess

    nodes = env.get("SLURM_STEP_NODELIST") or env["SLURM_JOB_NODELIST"]
    first = subprocess.run(["scontrol", "show", "hostnames", nodes], capture_output=True, text=True,
                           check=True).stdout.split()[0]
    return {"RANK": env["SLURM_PROCID"], "WORLD_SIZE": env["SLURM_STEP_NUM_TASKS"],
            "LOCAL_RANK": env.get("SLURM_LOCALID", "0"), "MASTER_ADDR": env.get("MASTER_ADDR", first),
            "MASTER_PORT": env.get("MASTER_PORT", str(20000 + int(env["SLURM_JOB_ID"]) % 20000))}


def launched_world_size() -> int:
    """WORLD_SIZE set by torchrun (1 when started otherwise)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def join(device_name: str, timeout_s: int, select_device) -> tuple[Group, torch.device]:
    """Join the process group that torchrun's environment describes (RANK, WORLD_SIZE, LOCAL_RANK,
    MASTER_ADDR/PORT), or a SLURM step's (:func:`slurm_environment`); the device is the local rank's GPU, or
    the CPU."""
    os.environ.update(slurm_environment())
    if launched_world_size() <= 1:
        return Group(), select_device(device_name)
    rank, world, local = int(os.environ["RANK"]), launched_world_size(), int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = device_name != "cpu" and torch.cuda.is_available()
    if device_name == "cuda" and not use_cuda:
        select_device(device_name)  # raises the one-line "no CUDA" error
    index = local if use_cuda and torch.cuda.device_count() > 1 else 0  # srun --gpus-per-task=1 shows each task one GPU
    if use_cuda:
        torch.cuda.set_device(index)
    device = torch.device("cuda", index) if use_cuda else torch.device("cpu")
    backend = "nccl" if use_cuda else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=timedelta(seconds=timeout_s))
    return Group(rank, world, backend), device


def wrap(model: torch.nn.Module, group: Group, sync_batchnorm: bool, device: torch.device):
    """(model, trainer): the model that monitoring and checkpoints use, and the module the training steps run
    through — the model itself alone, a DistributedDataParallel sharing its parameters and buffers otherwise."""
    if not group.active:
        return model, model
    if sync_batchnorm:
        if device.type != "cuda":
            raise FastAdvError("runtime.sync_batchnorm needs CUDA devices (torch's SyncBatchNorm has no CPU "
                               "kernel); set it false to normalise per replica")
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    ids = [device.index] if device.type == "cuda" else None
    return model, torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)  # broadcasts rank 0's buffers


def any_rank(flag: bool, group: Group, device: torch.device) -> bool:
    """True on every rank when ``flag`` is True on at least one (a stop request)."""
    if not group.active:
        return flag
    t = torch.tensor([int(flag)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item())


def sum_over_ranks(values: dict, group: Group, device: torch.device) -> dict:
    """The per-key sums of ``values`` (numbers or 0-d tensors) over all ranks."""
    if not group.active:
        return values
    keys = list(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return dict(zip(keys, t.tolist()))


def every_rank(value, group: Group) -> list:
    """``value`` (a small picklable object) of every rank, in rank order."""
    if not group.active:
        return [value]
    values = [None] * group.world
    dist.all_gather_object(values, value)
    return values


def share_rank0_buffers(model: torch.nn.Module, group: Group) -> None:
    """Rank 0's buffers (batch-norm running statistics) on every rank, so that every rank evaluates the same model."""
    if group.active:
        for b in model.buffers():
            dist.broadcast(b, 0)


def barrier(group: Group) -> None:
    if group.active:
        dist.barrier()


def lost_peer(e: BaseException) -> bool:
    """Whether ``e`` is a collective failing because another rank is gone (gloo and NCCL raise plain RuntimeErrors)."""
    return isinstance(e, dist.DistError) or any(
        s in str(e) for s in ("gloo", "NCCL", "Connection reset", "Connection closed", "Timed out"))


def leave(group: Group) -> None:
    if group.active and dist.is_initialized():
        dist.destroy_process_group()


def check_data_parallel(cfg, group: Group) -> None:
    """Refuse a data-parallel launch that the run's config (a TrainConfig) cannot honour."""
    if not group.active:
        return
    if not spec_of(cfg.method.name).data_parallel:
        ok = sorted(n for n, s in specs().items() if s.data_parallel)
        raise FastAdvError(f"method {cfg.method.name!r} cannot train data-parallel (its loss is not a mean of "
                           f"per-example terms DDP may average); valid on {group.world} ranks: {', '.join(ok)}")
    smallest = min(ph.batch_size for ph in cfg.phases)
    if smallest < group.world:
        raise FastAdvError(f"the batch size {smallest} is the global batch: it must be at least the number of ranks "
                           f"({group.world})")
