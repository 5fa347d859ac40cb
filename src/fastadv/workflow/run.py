"""``fastadv run`` and ``fastadv report``: Snakemake called with its arguments in an order it parses as meant.

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
from typing import Callable

from fastadv.errors import FastAdvError, unknown_choice


def snakemake_command(targets: list[str], scale: str | None = None, cores: str = "all", profile: str | None = None,
                      dry_run: bool = False) -> list[str]:
    """The Snakemake command line: options, then the targets, then ``--config`` (which takes the rest)."""
    if not targets:
        raise FastAdvError("no target given; e.g. fastadv run results/fig1.pdf --scale quick (fastadv targets)")
    cmd = ["snakemake", "--cores", str(cores)]
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
        scales = list((yaml.safe_load((root / "params.yaml").read_text()) or {}).get("scales") or {})
        if scale not in scales:
            raise unknown_choice("scale", scale, scales)
    if profile is not None and not (Path(profile) / "config.yaml").is_file():
        raise FastAdvError(f"no Snakemake profile at {profile!r} (a folder holding config.yaml); "
                           "e.g. workflow/profiles/slurm")


def run_targets(targets: list[str], scale: str | None = None, cores: str = "all", profile: str | None = None,
                dry_run: bool = False, root: Path | None = None) -> int:
    """Run Snakemake on ``targets`` in ``root`` (default: the working directory); its exit status."""
    root = Path.cwd() if root is None else root
    check_project(root, scale, profile)
    return _call("fastadv run", snakemake_command(targets, scale, cores, profile, dry_run), root)


def _call(who: str, cmd: list[str], root: Path) -> int:
    """Run ``cmd`` (a Snakemake command line) in ``root`` with this environment's bin first on PATH, where the jobs
    find ``fastadv`` and Snakemake is looked up first; its exit status."""
    path = str(Path(sys.executable).parent) + os.pathsep + os.environ.get("PATH", "")
    exe = shutil.which(cmd[0], path=path)
    if exe is None:
        raise FastAdvError("snakemake not found: pip install 'fastadv[workflow]' (make setup installs it)")
    print(f"{who}:", " ".join(cmd[1:]), file=sys.stderr)
    return subprocess.run([exe, *cmd[1:]], cwd=root, env={**os.environ, "PATH": path}).returncode


def built_targets(root: Path, scale: str, known: Callable[[str], bool]) -> list[str]:
    """The figures and tables of ``scale`` that exist under ``root``'s results/<scale>/ (the report's contents);
    ``known``: whether a file's stem names a target (fastadv.paper.targets.known)."""
    return [str(f.relative_to(root)) for f in sorted((root / "results" / scale).glob("*"))
            if f.suffix in (".pdf", ".md") and known(f.stem)]


def write_report(scale: str, known: Callable[[str], bool], out: str | None = None, root: Path | None = None) -> int:
    """Snakemake's HTML report of what has been built at ``scale``: every figure and table there, with its caption
    and the resolved config its job was given (default: results/<scale>/report.html)."""
    root = Path.cwd() if root is None else root
    check_project(root, scale, None)
    built = built_targets(root, scale, known)
    if not built:
        raise FastAdvError(f"nothing built at scale {scale!r} in {root}/results/{scale}: build a target first, "
                           f"e.g. fastadv run results/{scale}/fig1.pdf --scale {scale}")
    cmd = ["snakemake", "--report", out or f"results/{scale}/report.html", *built, "--config", f"scale={scale}"]
    return _call("fastadv report", cmd, root)
