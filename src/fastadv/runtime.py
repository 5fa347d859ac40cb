"""Device, threads, seeds derived per step, and the hardware/software stamp of every result."""
from __future__ import annotations

import hashlib
import os
import platform

import torch


def select_device(name: str) -> torch.device:
    from .errors import FastAdvError

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise FastAdvError("runtime.device 'cuda' requested but no CUDA device is available; valid here: auto, cpu")
    return torch.device(name)


def set_threads(threads: int) -> None:
    """0 keeps torch's default; Snakemake passes the rule's ``threads`` here."""
    if threads > 0:
        torch.set_num_threads(threads)


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
