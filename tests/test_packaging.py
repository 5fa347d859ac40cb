"""The package as a user installs it: a wheel built from the repository, installed into a fresh environment
outside it, works (command, packaged params.yaml, evaluation of a model file); its metadata declares every
third-party module the code imports."""
import ast
import email
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from tests.helpers import REPO

# Import name → distribution name, where they differ.
DISTRIBUTION = {"yaml": "pyyaml", "PIL": "pillow"}
# Modules only one feature needs: the extra that declares them (imported inside that feature's function).
EXTRA_OF = {"pyautoattack": "autoattack", "dvclive": "workflow", "robustbench": "robustbench"}


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", "-w", str(out),
                    str(REPO)], check=True, capture_output=True, text=True)
    (path,) = out.glob("fastadv-*.whl")
    return path


def _metadata(wheel: Path) -> email.message.Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return email.message_from_bytes(z.read(name))


def _third_party_imports() -> set[str]:
    stdlib = set(sys.stdlib_module_names)
    found = set()
    for p in (REPO / "src/fastadv").rglob("*.py"):
        for node in ast.walk(ast.parse(p.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) and node.module and not node.level else [])
            found |= {n.split(".")[0] for n in names}
    return {m for m in found if m not in stdlib and m != "fastadv"}


def test_metadata_declares_license_urls_extras_and_every_imported_module(wheel):
    meta = _metadata(wheel)
    assert meta["License-Expression"] == "MIT" and meta.get_all("Project-URL")
    requires = meta.get_all("Requires-Dist")

    def dist_of(req: str) -> str:
        return req.split(";")[0].split(">")[0].split("=")[0].strip().lower()

    runtime = {dist_of(r) for r in requires if "extra ==" not in r}
    in_extra = {(r.split("extra ==")[1].strip().strip('"'), dist_of(r)) for r in requires if "extra ==" in r}
    assert {"autoattack", "workflow", "test"} <= set(meta.get_all("Provides-Extra"))
    for module in sorted(_third_party_imports()):
        dist = DISTRIBUTION.get(module, module).lower()
        if module in EXTRA_OF:
            assert (EXTRA_OF[module], dist) in in_extra, module
        else:
            assert dist in runtime, f"{module} is imported but {dist} is not a runtime dependency"
    assert "jsonschema" not in runtime and ("test", "jsonschema") in in_extra, "only the tests use jsonschema"


def test_a_wheel_installed_outside_the_repository_works(wheel, tmp_path, tiny_cfg, synthetic_root):
    """Fresh environment in a temp dir: the wheel (not the checkout) is what runs; the heavy dependencies are
    reused from this environment's site-packages through a .pth file rather than installed again."""
    import torch

    from fastadv.training.checkpoint import save_model
    from fastadv.training.step import make_model

    env_dir = tmp_path / "env"
    subprocess.run([sys.executable, "-m", "venv", str(env_dir)], check=True)
    site = next(env_dir.glob("lib/python*/site-packages"))
    (site / "deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    pip = subprocess.run([str(env_dir / "bin/python"), "-m", "pip", "install", "-q", "--no-deps", "--no-index",
                          str(wheel)], capture_output=True, text=True)
    assert pip.returncode == 0, pip.stderr[-2000:]
    work = tmp_path / "elsewhere"
    work.mkdir()

    def run(*args):
        r = subprocess.run([str(env_dir / "bin/fastadv"), *args], cwd=work, capture_output=True, text=True)
        assert r.returncode == 0, r.stderr[-2000:]
        return r.stdout

    where = subprocess.run([str(env_dir / "bin/python"), "-c", "import fastadv; print(fastadv.__file__)"], cwd=work,
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site)), where
    assert run("--version").strip() == "fastadv 0.1.0"
    assert "name: fgsm" in run("config", "--scale", "smoke", "--set", "method.name=fgsm")  # packaged params.yaml
    model = make_model(__import__("fastadv").TrainConfig.from_dict(tiny_cfg), torch.device("cpu"))
    save_model(work / "m.pt", model, tiny_cfg, "final", 0)
    run("evaluate", "--scale", "smoke", "--model", str(work / "m.pt"), "--out", str(work / "r.json"),
        "--data-root", str(synthetic_root), "--set", "n_points=8", "--set", "restart_rule=worst_case",
        "--set", "threads=1")
    assert (work / "r.json").is_file()
