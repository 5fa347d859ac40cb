"""A new method is one file: dropped into a copy of the package, or shipped by another package through the
entry-point group ``fastadv.methods``. Either way, with nothing else edited and the code installed with
pip, the method is listed, validated (a bad value names its dotted path), trained from the CLI, planned by
the workflow (dry run, with its cost as the scheduling priority) and labelled in figures."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from fastadv.training.loop import FINISHED
from tests.helpers import REPO, copy_workflow, snakemake

METHOD_FILE = '''
"""Training on uniform noise of ε·scale (a test's method)."""
from fastadv.lazy import lazy
from fastadv.methods.base import Method, StepOutput, ce_step
from fastadv.methods.registry import MethodSpec, Param

torch = lazy("torch")

SPEC = MethodSpec(
    "noise",
    summary="training on x + U[-s·ε, s·ε] (a plug-in's method)",
    impl="{module}:NoiseAT",
    params={{"scale": Param("float", 0.5, "noise / ε", min=0)}},
    passes=1,
    styles={{"noise": ("Noise AT", "#123456")}},
)


class NoiseAT(Method):
    def step(self, model, x, y, ctx) -> StepOutput:
        noise = torch.empty_like(x).uniform_(-1, 1, generator=ctx.gen) * self.params["scale"] * self.eps
        return ce_step(model, (x + noise).clamp(0, 1), y)
'''

PLUGIN_PYPROJECT = '''
[build-system]
requires = ["setuptools>=68"]
build-backend = "setuptools.build_meta"

[project]
name = "fastadv-noise"
version = "0.1.0"

[project.entry-points."fastadv.methods"]
noise = "fastadv_noise:SPEC"
'''

EXPERIMENT = '''
variants:
  noise: {method: {name: noise}}
experiments:
  mine:
    description: "a plug-in method beside FGSM"
    dataset: svhn
    methods: [noise, fgsm]
    eps: [8]
    seeds: [0]
    models: [final]
    autoattack: false
'''


def _pip_install(src: Path, target: Path) -> None:
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation", "--no-index",
                    "--target", str(target), str(src)], check=True, capture_output=True, text=True)


def _package_copy(tmp: Path) -> Path:
    """A copy of this project with one new file in src/fastadv/methods/, pip-installed."""
    proj = tmp / "proj"
    shutil.copytree(REPO / "src", proj / "src", ignore=shutil.ignore_patterns("*.egg-info", "__pycache__"))
    (proj / "src/fastadv/params.yaml").unlink()  # a link to the repository's file: ship the content
    shutil.copy(REPO / "params.yaml", proj / "src/fastadv/params.yaml")
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(REPO / name, proj / name)
    (proj / "src/fastadv/methods/noise.py").write_text(METHOD_FILE.format(module="fastadv.methods.noise"))
    _pip_install(proj, tmp / "site")
    return tmp / "site"


def _plugin_package(tmp: Path, source: str = METHOD_FILE.format(module="fastadv_noise")) -> Path:
    """A separate distribution adding the method through the entry-point group, pip-installed."""
    pkg = tmp / "plugin"
    (pkg / "fastadv_noise").mkdir(parents=True)
    (pkg / "pyproject.toml").write_text(PLUGIN_PYPROJECT)
    (pkg / "fastadv_noise/__init__.py").write_text(source)
    _pip_install(pkg, tmp / "site")
    return tmp / "site"


@pytest.mark.slow
@pytest.mark.parametrize("route", ["package_copy", "entry_point"])
def test_a_new_method_file_is_listed_validated_trained_planned_and_labelled(route, tmp_path, synthetic_root):
    site = (_package_copy if route == "package_copy" else _plugin_package)(tmp_path)
    env = {**os.environ, "PYTHONPATH": str(site)}

    def fastadv(*args):
        return subprocess.run([sys.executable, "-m", "fastadv", *args], env=env, cwd=tmp_path, capture_output=True,
                              text=True)

    where = fastadv("methods")
    assert where.returncode == 0 and "| `noise` | training on x + U[-s·ε, s·ε] (a plug-in's method) |" in where.stdout
    bad = fastadv("config", "--set", "method.name=noise", "--set", "method.noise.scale=-1")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "fastadv: error: config key train.method.noise.scale=-1.0 out of range; valid: [0, inf)"

    sets = ["data.subset=32", "optim.batch_size=32", "optim.epochs=1", "model.width=4", "monitor.test_points=16",
            "monitor.train_points=16", "monitor.pgd_steps=1", "runtime.threads=1", "runtime.progress=never",
            f"data.root={synthetic_root}", "data.dataset=svhn", "method.name=noise", "method.noise.scale=0.25"]
    run = fastadv("train", "--scale", "smoke", "--out", str(tmp_path / "run"), *[a for s in sets for a in ("--set", s)])
    assert run.returncode == 0, run.stderr[-2000:]
    summary = json.loads((tmp_path / "run/summary.json").read_text())
    assert summary["status"] in FINISHED and summary["config"]["method"]["noise"] == {"scale": 0.25}

    (tmp_path / "wf").mkdir()
    wf = copy_workflow(tmp_path / "wf")
    (wf / "mine.yaml").write_text(EXPERIMENT)
    plan = snakemake(wf, "-n", "--cores", "2", "results/smoke/mine/results.csv", "--configfile", "mine.yaml",
                     env={"PYTHONPATH": str(site)}).stdout
    assert "runs/smoke/mine/noise/eps8/seed0/model_final.pt" in plan and "runs/smoke/mine/fgsm/eps8/seed0" in plan

    label = subprocess.run([sys.executable, "-c", textwrap.dedent("""
        from fastadv.paper.figures import style
        from fastadv.methods.registry import method_label
        print(method_label({"name": "noise", "noise": {"scale": 0.5}}), *style("noise"), sep="|")""")],
        env=env, capture_output=True, text=True, check=True).stdout.strip()
    assert label == "noise|Noise AT|#123456"


@pytest.mark.slow
def test_a_broken_plugin_is_named_in_a_one_line_error(tmp_path):
    site = _plugin_package(tmp_path, 'raise RuntimeError("boom")\n')
    r = subprocess.run([sys.executable, "-m", "fastadv", "methods"], env={**os.environ, "PYTHONPATH": str(site)},
                       capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip() == ("fastadv: error: entry point 'noise' = 'fastadv_noise:SPEC' of group "
                                                      "'fastadv.methods' failed to load: RuntimeError: boom")
