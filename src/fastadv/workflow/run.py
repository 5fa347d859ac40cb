"""``fastadv run``: Snakemake called with its arguments in an order it parses as meant.

Snakemake's ``--config`` takes every word after it as a ``key=value`` pair, so
``snakemake -n --config scale=quick results/fig1.pdf`` reads the target as a config pair and fails with a
traceback. ``fastadv run TARGET… --scale S`` puts the targets first and the scale last, checks the scale and the
profile before Snakemake starts, and puts this environment's ``fastadv`` first on ``PATH`` for the jobs (as
``make demo`` does). Torch-free.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from fastadv.errors import FastAdvError


def snakemake_command(targets: list[str], scale: str | None = None, cores: str = "all", profile: str | None = None,
                      dry_run: bool = False, snakemake: str = "snakemake") -> list[str]:
    """The Snakemake command line: options, then the targets, then ``--config`` (which takes the rest)."""
    if not targets:
        raise FastAdvError("no target given; e.g. fastadv run results/fig1.pdf --scale quick (fastadv targets)")
    cmd = [snakemake, "--cores", str(cores)]
    cmd += ["--profile", profile] if profile else []
    cmd += ["-n"] if dry_run else []
    cmd += list(targets)
    cmd += ["--config", f"scale={scale}"] if scale else []
    return cmd


def check_project(root: Path, scale: str | None, profile: str | None) -> None:
    """Refuse before Snakemake starts: no Snakefile here, an unknown scale (the valid ones listed), no profile."""
    import yaml

    if not (root / "Snakefile").is_file():
        raise FastAdvError(f"no Snakefile in {root}: run fastadv run in the fastadv checkout (the workflow's folder)")
    if scale is not None:
        scales = sorted((yaml.safe_load((root / "params.yaml").read_text()) or {}).get("scales") or {})
        if scale not in scales:
            raise FastAdvError(f"unknown scale {scale!r}; valid: {', '.join(scales)}")
    if profile is not None and not (Path(profile) / "config.yaml").is_file():
        raise FastAdvError(f"no Snakemake profile at {profile!r} (a folder holding config.yaml); "
                           "e.g. workflow/profiles/slurm")


def run_targets(targets: list[str], scale: str | None = None, cores: str = "all", profile: str | None = None,
                dry_run: bool = False, root: Path | None = None) -> int:
    """Run Snakemake on ``targets`` in ``root`` (default: the working directory); its exit status."""
    root = Path.cwd() if root is None else root
    check_project(root, scale, profile)
    bin_dir = str(Path(sys.executable).parent)
    exe = shutil.which("snakemake", path=bin_dir + os.pathsep + os.environ.get("PATH", ""))
    if exe is None:
        raise FastAdvError("snakemake not found: pip install 'fastadv[workflow]' (make setup installs it)")
    env = {**os.environ, "PATH": bin_dir + os.pathsep + os.environ.get("PATH", "")}
    cmd = snakemake_command(targets, scale, cores, profile, dry_run, exe)
    print("fastadv run:", " ".join(cmd[1:]), file=sys.stderr)
    return subprocess.run(cmd, cwd=root, env=env).returncode
