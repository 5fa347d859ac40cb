"""Device, threads, seeds derived per step, and the hardware/software stamp of every result."""
from __future__ import annotations

import hashlib
import os
import platform
import sys

import torch


_GPU_LOCK = None  # held for the life of the process


def claim_gpu(count: int) -> int:
    """Index of a GPU no other fastadv process on this machine holds.

    ``snakemake --resources gpu=N`` runs N jobs at once but assigns no device; each job
    then takes the first GPU whose lock file (``$TMPDIR/fastadv-gpu-<i>.lock``) it can
    flock exclusively. Under SLURM, CUDA_VISIBLE_DEVICES already shows one GPU.
    """
    global _GPU_LOCK
    import fcntl
    import tempfile

    for i in range(count):
        f = open(os.path.join(tempfile.gettempdir(), f"fastadv-gpu-{i}.lock"), "w")
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.close()
            continue
        _GPU_LOCK = f
        return i
    return 0  # more jobs than GPUs: share the first


def select_device(name: str) -> torch.device:
    from fastadv.errors import FastAdvError

    if name == "cuda" and not torch.cuda.is_available():
        raise FastAdvError("runtime.device 'cuda' requested but no CUDA device is available; valid here: auto, cpu")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    if _GPU_LOCK is None and torch.cuda.device_count() > 1:
        torch.cuda.set_device(claim_gpu(torch.cuda.device_count()))
    return torch.device("cuda", torch.cuda.current_device())


def set_threads(threads: int) -> None:
    """0 keeps torch's default; Snakemake passes the rule's ``threads`` here."""
    if threads > 0:
        torch.set_num_threads(threads)


# oneDNN 3.12 (torch 2.14.1) crashes (SIGSEGV/SIGABRT on one thread) or hangs (two threads) in its AVX2
# kernel for the weight gradient of a channels-last 1×1 convolution with stride > 1 and fewer than 8 input
# channels; AVX-512 machines take another kernel, hence "passes on one CI machine, dies on the next"
# (docs/performance.md, "channels-last crash"). Decided from the model alone, so a run's layout (and its
# round-off) does not depend on which CPU it ran on.
CHANNELS_LAST_MIN_CHANNELS = 8


def channels_last_hazard(model: torch.nn.Module) -> str | None:
    """Why ``model`` must not train channels-last (the first offending layer), or None."""
    for name, m in model.named_modules():
        if (isinstance(m, torch.nn.Conv2d) and m.kernel_size == (1, 1) and max(m.stride) > 1
                and m.in_channels < CHANNELS_LAST_MIN_CHANNELS):
            return (f"layer {name!r} is a 1x1 convolution with stride {max(m.stride)} and {m.in_channels} input "
                    f"channels (< {CHANNELS_LAST_MIN_CHANNELS}): oneDNN's channels-last weight gradient crashes "
                    f"on AVX2 CPUs")
    return None


def memory_layout(model: torch.nn.Module, channels_last: bool) -> dict:
    """The memory layout a run trains ``model`` in: ``runtime.channels_last`` unless the model takes the
    crashing oneDNN path, in which case the default layout, with the reason (recorded in summary.json)."""
    reason = channels_last_hazard(model) if channels_last else None
    return {"channels_last_requested": channels_last, "channels_last": channels_last and reason is None,
            "reason": reason}


def double_backward_path(requested: str, device: torch.device, precision: str) -> dict:
    """How a run's input gradients taken with ``create_graph`` build their graph: ``runtime.double_backward``
    unless ``fused`` cannot apply (checked on the CPU in fp32 only), with the reason (recorded in summary.json)."""
    reason = None
    if requested == "fused" and (device.type != "cpu" or precision != "fp32"):
        reason = f"the fused double backward runs on the CPU in fp32 only (device {device.type}, precision {precision})"
    return {"requested": requested, "used": "native" if reason else requested, "reason": reason}


def in_layout(obj, channels_last: bool):
    """A model, or a batch of images (4-d), in the channels-last layout when ``channels_last``; other
    tensors (labels) and the default layout pass through unchanged."""
    if not channels_last:
        return obj
    if isinstance(obj, torch.nn.Module):
        return obj.to(memory_format=torch.channels_last)
    return obj.contiguous(memory_format=torch.channels_last) if obj.dim() == 4 else obj


def derived_seed(*parts) -> int:
    """A 63-bit seed from (seed, epoch, step, purpose …): every random draw in training is a
    pure function of where it happens, so a resumed run draws exactly what an
    uninterrupted one would."""
    h = hashlib.sha256(repr(parts).encode()).digest()
    return int.from_bytes(h[:8], "little") & ((1 << 63) - 1)


def generator(device: torch.device, *parts) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(derived_seed(*parts))


def hardware_stamp(device: torch.device) -> dict:
    gpu = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return {
        "device": str(device), "gpu": gpu, "cpu": platform.processor() or platform.machine(),
        "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__, "python": platform.python_version(),
    }


def say_ignored(layout: dict, graph: dict) -> None:
    """One line on stderr for each runtime setting the run cannot apply (the reason is in summary.json too)."""
    if layout["reason"]:
        print(f"runtime.channels_last ignored, training in the default layout: {layout['reason']}", file=sys.stderr)
    if graph["reason"]:
        print(f"runtime.double_backward: fused ignored, autograd's own double backward: {graph['reason']}",
              file=sys.stderr)
