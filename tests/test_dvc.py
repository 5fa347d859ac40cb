"""DVC on top of the Snakemake workflow (dvc.yaml, .dvc/config, .dvcignore).

Fast tests check the declarations. The slow ones check the acceptance list at the smoke
scale in fresh git clones of a throw-away project made from this tree: `dvc repro` builds
the figures; a second repro does nothing; one method's hyperparameter reruns only that
method's jobs; `dvc push`/`dvc pull` restore every output byte-identically and, after
`snakemake --touch`, Snakemake sees nothing to do. Two smoke pipelines in all: the DVC one, and
the plain `snakemake` one the suite shares (tests/conftest.py: smoke_build), whose per-run results
must equal the DVC ones.

The hyperparameter test keeps the runs' resume states (state.pt) of the old config in
place, as a real project has them: train_model must discard them, not refuse.
"""
from __future__ import annotations

import configparser
import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml

from fastadv.training.loop import FINISHED
from tests.command_server import command_path
from tests.helpers import PARAMS, REPO, data_source, snakemake

BIN = str(Path(sys.executable).parent)
DVC = f"{BIN}/dvc"
TARGET = "results/smoke/fig1.pdf"
STAGE = "figures"
SCALE_LINE = "scale: paper "  # params.yaml's top-level scale; the test project builds smoke
# The test project's smoke Fig. 1 at one ε, as a user narrows an experiment in params.yaml: two runs, the smallest
# build that still has a second method to leave alone when one method's hyperparameter changes.
FIG1_LINE = "      fig1: {methods: [fgsm, gradalign], eps: [4, 16], seeds: [0]}\n"
FIG1_EPS = 4
# What a DVC project needs from this tree. src/ too: it is a stage dependency (the code that
# runs is the installed fastadv, i.e. this tree's src/ - the same files).
PROJECT_FILES = ["Snakefile", "params.yaml", "dvc.yaml", ".dvcignore", ".gitignore", ".dvc/config",
                 ".dvc/.gitignore", ".dvc/plots/learning_curves.json", "data/README.md"]
PROJECT_DIRS = ["workflow", "src/fastadv"]
GRADALIGN = "gradalign: {method: {name: gradalign}, optim: {lr_max: 0.3}}"
GRADALIGN_CHANGED = "gradalign: {method: {name: gradalign, gradalign: {lambda: 0.5}}, optim: {lr_max: 0.3}}"


def env() -> dict:
    e = {**os.environ, "PATH": command_path(), "DVC_NO_ANALYTICS": "1",
         "GIT_AUTHOR_NAME": "test", "GIT_AUTHOR_EMAIL": "test@example.com",
         "GIT_COMMITTER_NAME": "test", "GIT_COMMITTER_EMAIL": "test@example.com"}
    src = data_source()
    if src is not None:
        e["FASTADV_DATA_SOURCE"] = str(src)
    return e


def sh(cwd, *args, check=True, merge=False) -> subprocess.CompletedProcess:
    """Run a command; merge=True: stderr into stdout, in order (Snakemake logs to stderr)."""
    r = subprocess.run(list(args), cwd=cwd, env=env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT if merge else subprocess.PIPE, text=True)
    if check and r.returncode != 0:
        raise AssertionError(f"{' '.join(args)} failed ({r.returncode}):\n{r.stdout[-4000:]}\n{(r.stderr or '')[-4000:]}")
    return r


def dvc(cwd, *args, check=True, merge=False) -> subprocess.CompletedProcess:
    return sh(cwd, DVC, *args, check=check, merge=merge)


def out(r: subprocess.CompletedProcess) -> str:
    return r.stdout + (r.stderr or "")


def job_stats(text: str, stage: str | None = STAGE) -> dict:
    """The 'Job stats:' table of the Snakemake run inside one stage of a `dvc repro` log
    (stage=None: the first table of a Snakemake log), as {rule: count}."""
    if stage is not None:
        marker = f"Running stage '{stage}'"
        if marker not in text:
            return {}
        text = text.split(marker, 1)[1]
    lines = text.splitlines()
    if "Job stats:" not in lines:
        return {}
    counts = {}
    for line in lines[lines.index("Job stats:") + 1:]:
        parts = line.split()
        if not parts:
            if counts:
                break
            continue
        if len(parts) == 2 and parts[1].isdigit() and parts[0] != "total":
            counts[parts[0]] = int(parts[1])
    return counts


def planned(wd: Path) -> dict:
    """{rule: count} of the jobs `snakemake -n TARGET` would run ({} when nothing)."""
    r = snakemake(wd, "-n", "--cores", "2", TARGET)
    jobs = job_stats(out(r), stage=None)
    assert jobs or "Nothing to be done" in out(r), out(r)[-3000:]
    return jobs


def make_project(dst: Path) -> Path:
    dst.mkdir(parents=True)
    for name in PROJECT_FILES:
        (dst / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / name, dst / name)
    params = (REPO / "params.yaml").read_text()
    assert SCALE_LINE in params and params.count(FIG1_LINE) == 1
    (dst / "params.yaml").write_text(params.replace(SCALE_LINE, "scale: smoke ").replace(
        FIG1_LINE, FIG1_LINE.replace("eps: [4, 16]", f"eps: [{FIG1_EPS}]")))
    for name in PROJECT_DIRS:
        shutil.copytree(REPO / name, dst / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    return dst


def git_origin(tmp: Path) -> Path:
    """A bare git repository holding the project, as a collaborator would clone it."""
    work = make_project(tmp / "init")
    sh(work, "git", "init", "-q", "-b", "main")
    sh(work, "git", "add", "-A")
    sh(work, "git", "commit", "-q", "-m", "fastadv project")
    origin = tmp / "origin.git"
    sh(tmp, "git", "clone", "-q", "--bare", str(work), str(origin))
    return origin


def clone(origin: Path, dst: Path) -> Path:
    sh(origin.parent, "git", "clone", "-q", str(origin), str(dst))
    return dst


def tree_hashes(root: Path, *paths: str, all_files=False) -> dict:
    """sha256 of every file under the given paths (relative to root); without all_files,
    only what DVC versions (not the runs' resume state, state.pt: see .dvcignore)."""
    hashes = {}
    for p in paths:
        base = root / p
        files = [base] if base.is_file() else sorted(
            f for f in base.rglob("*") if f.is_file() and (all_files or f.name != "state.pt"))
        for f in files:
            hashes[str(f.relative_to(root))] = hashlib.sha256(f.read_bytes()).hexdigest()
    return hashes


OUTPUTS = ("data/cifar10.npz", "runs/smoke", "results/smoke")


# ---------------------------------------------------------------- declarations (fast)

def dvc_yaml() -> dict:
    return yaml.safe_load((REPO / "dvc.yaml").read_text())


def test_one_stage_for_the_configured_scale_calling_the_snakemake_target(tmp_path):
    project = make_project(tmp_path / "p")
    sh(project, "git", "init", "-q")
    stages = dvc(project, "stage", "list").stdout
    assert sorted(line.split()[0] for line in stages.splitlines()) == ["data", "figures"]
    assert "runs/smoke, results/smoke" in stages and "paper" not in stages, stages
    figures = dvc_yaml()["stages"]["figures"]
    assert figures["cmd"] == ('PATH="$PWD/.venv/bin:$PATH" snakemake --cores all results/${scale}/fig1.pdf '
                              'results/${scale}/fig1/curves.csv')
    outs = {k: v for o in figures["outs"] for k, v in o.items()}
    assert outs == {"runs/${scale}": {"persist": True}, "results/${scale}": {"persist": True}}
    assert {"Snakefile", "workflow", "src/fastadv", "data"} <= set(figures["deps"])
    # A bare `dvc repro` reproduces the configured scale only; its dry run works on a fresh clone (no data yet).
    assert not (project / "data/cifar10.npz").exists()
    dry = out(dvc(project, "repro", "--dry", merge=True))
    assert "snakemake --cores all results/smoke/fig1.pdf results/smoke/fig1/curves.csv" in dry, dry
    assert "results/paper" not in dry, dry
    assert dry.index("Running stage 'data'") < dry.index("Running stage 'figures'"), dry


def test_params_are_keys_of_params_yaml_and_no_value_is_repeated():
    params = yaml.safe_load(PARAMS.read_text())
    doc = dvc_yaml()
    for scale in params["scales"]:
        for key in doc["stages"]["figures"]["params"]:
            node = params
            for part in key.replace("${scale}", scale).split("."):
                assert isinstance(node, dict) and part in node, f"{key} is not a key of params.yaml"
                node = node[part]

    # No hyperparameter value in dvc.yaml: nothing but strings, lists, dicts and `persist`.
    def leaves(x):
        if isinstance(x, dict):
            for v in x.values():
                yield from leaves(v)
        elif isinstance(x, list):
            for v in x:
                yield from leaves(v)
        else:
            yield x
    assert all(isinstance(v, str) or v is True for v in leaves(doc))


def test_cache_links_instead_of_copying_and_no_remote_by_default():
    cfg = configparser.ConfigParser()
    cfg.read(REPO / ".dvc/config")
    assert cfg["cache"]["type"].strip('"') == "hardlink,symlink"
    assert not any(s.startswith("'remote") or s.startswith("remote") for s in cfg.sections())


def test_stages_find_the_project_tools_without_an_activated_environment(tmp_path):
    """`.venv/bin/dvc repro` with .venv/bin not on PATH (a fresh shell after `make setup`): the stage's
    snakemake and the jobs' fastadv are the project's."""
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    project = make_project(tmp_path / "p")
    sh(project, "git", "init", "-q")
    (project / ".venv").symlink_to(REPO / ".venv")
    bare = {**env(), "PATH": os.pathsep.join(p for p in os.environ["PATH"].split(os.pathsep)
                                             if Path(p).resolve() != Path(BIN).resolve())}
    assert shutil.which("snakemake", path=bare["PATH"]) is None and shutil.which("fastadv", path=bare["PATH"]) is None
    r = subprocess.run([DVC, "repro", "data"], cwd=project, env=bare, capture_output=True, text=True)
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    assert (project / "data/cifar10.npz").is_file()


def offline_env() -> dict:
    """env() as on an offline compute node after `make demo`: FASTADV_DATA_SOURCE unset (only the Makefile's
    runs had it), and any download fails at once (every proxy is a closed local port)."""
    e = {k: v for k, v in env().items() if k != "FASTADV_DATA_SOURCE" and k.lower() != "no_proxy"}
    dead = "http://127.0.0.1:9"
    e.update(http_proxy=dead, https_proxy=dead, HTTP_PROXY=dead, HTTPS_PROXY=dead)
    return e


def repro_offline(project: Path, *targets: str) -> str:
    r = subprocess.run([DVC, "repro", *targets], cwd=project, env=offline_env(), stdout=subprocess.PIPE,
                       stderr=subprocess.STDOUT, text=True)
    assert r.returncode == 0, r.stdout[-4000:]
    return r.stdout


def test_one_default_data_source_for_make_snakemake_and_dvc(tmp_path, monkeypatch):
    """The Makefile's rule, declared once (in fastadv, used by `fastadv prepare`, hence by `make demo`, by
    Snakemake and by the data stage): $FASTADV_DATA_SOURCE, else ../shared/data when it holds cifar10.npz,
    else download."""
    from fastadv.data.datasets import default_source

    monkeypatch.delenv("FASTADV_DATA_SOURCE", raising=False)
    (tmp_path / "p").mkdir()
    monkeypatch.chdir(tmp_path / "p")
    assert default_source() == "download"
    (tmp_path / "shared/data").mkdir(parents=True)
    assert default_source() == "download"
    (tmp_path / "shared/data/cifar10.npz").write_bytes(b"")
    assert default_source() == str(tmp_path / "shared/data")
    monkeypatch.setenv("FASTADV_DATA_SOURCE", "/elsewhere/cifar10.npz")
    assert default_source() == "/elsewhere/cifar10.npz"
    makefile = (REPO / "Makefile").read_text()  # no second declaration
    assert not re.search(r"^\s*(export\s+)?FASTADV_DATA_SOURCE\b", makefile, re.M) and "wildcard" not in makefile
    data = dvc_yaml()["stages"]["data"]
    assert data["outs"] == [{"data/cifar10.npz": {"persist": True}}]  # a prepared file is not deleted first


def test_repro_keeps_data_prepared_by_make_demo_offline(tmp_path):
    """Issue 38: `make demo` prepared data/cifar10.npz (Snakemake, the Makefile's source); a later plain
    `dvc repro data` on an offline node, without that source, must find it up to date and record it in
    dvc.lock, not delete it and try to download it."""
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    from fastadv.data.datasets import load_arrays

    project = make_project(tmp_path / "p")
    sh(project, "git", "init", "-q")
    snakemake(project, "--cores", "1", "data/cifar10.npz")  # as `make demo` does: FASTADV_DATA_SOURCE = the copy
    npz = project / "data/cifar10.npz"
    before = hashlib.sha256(npz.read_bytes()).hexdigest()

    log = repro_offline(project, "data")
    assert "Running stage 'data'" in log and job_stats(log, "data") == {}, log[-3000:]  # Snakemake: nothing to do
    assert npz.is_file() and hashlib.sha256(npz.read_bytes()).hexdigest() == before
    load_arrays(project / "data", "cifar10")  # still the verified dataset
    lock = yaml.safe_load((project / "dvc.lock").read_text())
    outs = lock["stages"]["data"]["outs"]
    assert [o["path"] for o in outs] == ["data/cifar10.npz"], lock
    assert outs[0]["md5"] == hashlib.md5(npz.read_bytes()).hexdigest(), lock
    assert "up to date" in out(dvc(project, "status", "data")), out(dvc(project, "status", "data"))
    assert "Running stage" not in repro_offline(project, "data")


def test_data_stage_takes_the_copy_beside_the_project_as_make_demo_does(tmp_path):
    """No FASTADV_DATA_SOURCE, offline, ../shared/data/cifar10.npz beside the project: `dvc repro data`
    prepares from it, as `make demo` would, instead of downloading."""
    src = data_source()
    if src is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    from fastadv.data.datasets import load_arrays

    (tmp_path / "shared").mkdir()
    (tmp_path / "shared/data").symlink_to(src)
    project = make_project(tmp_path / "p")
    sh(project, "git", "init", "-q")
    log = repro_offline(project, "data")
    assert job_stats(log, "data") == {"prepare_data": 1}, log[-3000:]
    prepared = (project / "logs/prepare_data/cifar10.log").read_text()
    assert f"from {tmp_path / 'shared/data'} " in prepared, prepared
    load_arrays(project / "data", "cifar10")
    assert "up to date" in out(dvc(project, "status", "data"))


def test_bytecode_does_not_change_the_source_dependency(tmp_path):
    project = make_project(tmp_path / "p")
    sh(project, "git", "init", "-q")
    pyc = project / "src/fastadv/__pycache__/api.cpython-311.pyc"
    pyc.parent.mkdir()
    pyc.write_bytes(b"\0")
    assert dvc(project, "check-ignore", str(pyc.relative_to(project)), check=False).returncode == 0
    for kept in ("src/fastadv/api.py", "runs/smoke/fig1/fgsm/eps4/seed0/model_final.pt"):
        assert dvc(project, "check-ignore", kept, check=False).returncode == 1, kept
    assert dvc(project, "check-ignore", "runs/smoke/fig1/fgsm/eps4/seed0/state.pt", check=False).returncode == 0


# ---------------------------------------------------------------- acceptance (slow)
# The tests below share one built clone (module fixture) and run in file order; each
# leaves it reproduced and up to date. The hyperparameter change comes last.

@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """A fresh clone (params.yaml `scale: smoke`) after one `dvc repro figures`, with a copy of its outputs."""
    if data_source() is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    tmp = tmp_path_factory.mktemp("dvc")
    origin = git_origin(tmp)
    work = clone(origin, tmp / "clone")
    r = dvc(work, "repro", STAGE, merge=True)
    first = tmp / "first"  # the outputs as first reproduced (a later test changes gradalign's)
    for d in ("runs/smoke", "results/smoke"):
        shutil.copytree(work / d, first / d)
    return {"tmp": tmp, "origin": origin, "work": work, "first": first, "first_repro": out(r),
            "snapshot": tree_hashes(work, *OUTPUTS)}


@pytest.mark.slow
def test_repro_builds_the_smoke_figures_and_a_second_repro_does_nothing(built):
    work, log = built["work"], built["first_repro"]
    assert job_stats(log, "data") == {"prepare_data": 1}, log[-3000:]
    assert job_stats(log) == {"train_model": 2, "evaluate_model": 4, "collect_results": 1, "draw_accuracy_figure": 1,
                              "collect_curves": 1}, log[-3000:]
    assert (work / TARGET).read_bytes().startswith(b"%PDF")
    assert (work / "results/smoke/fig1.png").read_bytes().startswith(b"\x89PNG")
    # Outputs are DVC's, not git's: only dvc.lock is new to git.
    assert sh(work, "git", "status", "--porcelain").stdout.split() == ["??", "dvc.lock"]
    # Linked from the cache, not copied.
    assert (work / "runs/smoke/fig1/fgsm/eps4/seed0/model_final.pt").stat().st_nlink >= 2

    r = dvc(work, "repro", STAGE, merge=True)
    assert "Running stage" not in out(r) and "Data and pipelines are up to date" in out(r), out(r)
    assert "up to date" in out(dvc(work, "status", STAGE))
    assert planned(work) == {}

    # Metrics and plots come from the declarations in dvc.yaml (unbuilt scales: reported missing).
    metrics = json.loads(dvc(work, "metrics", "show", "--json").stdout)
    files = next(iter(metrics.values()))["data"]
    acc = {p: d["data"]["pgd"]["acc"] for p, d in files.items() if p.startswith("results/smoke/")}
    assert len(acc) == 4 and all(0 <= a <= 1 for a in acc.values()), metrics
    dvc(work, "plots", "show", "-o", str(built["tmp"] / "plots"))
    html = (built["tmp"] / "plots/index.html").read_text()
    assert "results_smoke_fig1.png" in html and "results_smoke_fig1_clean.png" in html
    # The learning curves of every run (dvc.yaml plots: results/<scale>/fig1/curves.csv), drawn with the
    # project's template: each run named, each statistic a panel, the CO flags a layer of their own.
    runs = sorted(str(p.parent.relative_to(work)) for p in work.glob("runs/smoke/fig1/*/*/*/history.csv"))
    assert len(runs) == 2 and all(f'"run": "{r}"' in html for r in runs), runs
    vega = json.loads(dvc(work, "plots", "show", "--json", "results/smoke/fig1/curves.csv").stdout)
    spec = next(p["content"] for k, v in vega["data"].items() if k.startswith("dvc.yaml::") for p in v)
    assert spec["facet"]["row"]["field"] == "field" and spec["spec"]["layer"][1]["transform"]
    assert {d["field"] for d in spec["data"]["values"]} == {"test_clean_acc", "test_pgd_acc", "grad_alignment"}


def _comparable(path: Path):
    """A run file's content minus wall-clock times (which no two runs share)."""
    if path.suffix == ".json":
        def strip(x):
            if isinstance(x, dict):
                return {k: strip(v) for k, v in x.items() if "seconds" not in k}
            return x
        return strip(json.loads(path.read_text()))
    if path.suffix == ".csv":
        df = pd.read_csv(path)
        return df.drop(columns=[c for c in df.columns if "seconds" in c]).astype(str).to_dict("list")
    if path.name.startswith("model_"):
        ckpt = torch.load(path, map_location="cpu", weights_only=False)
        return {k: v.tolist() for k, v in ckpt["state_dict"].items()}, ckpt["epoch"]
    return None


@pytest.mark.slow
def test_dvc_and_plain_snakemake_produce_the_same_run_results(built, smoke_build):
    plain = smoke_build  # TARGET and more (tests.helpers.SMOKE_TARGETS) built by plain Snakemake, at both ε
    first = built["first"]  # the DVC build as first reproduced (its Fig. 1 at FIG1_EPS only)
    rels = sorted(tree_hashes(first, "runs/smoke", "results/smoke", all_files=True))
    fig1 = ("runs/smoke/fig1/", "results/smoke/fig1/", "results/smoke/fig1.", "results/smoke/fig1_clean.",
            "results/smoke/fig1_data.")
    assert all(rel.startswith(fig1) for rel in rels), rels
    at_eps = f"/eps{FIG1_EPS}/"
    assert rels == sorted(r for r in tree_hashes(plain, "runs/smoke", "results/smoke", all_files=True)
                          if r.startswith(fig1) and ("/eps" not in r or at_eps in r))
    compared = 0
    for rel in rels:
        if rel.startswith(("runs/smoke/fig1/", "results/smoke/fig1/evals/")):
            want = _comparable(plain / rel)
            if want is not None:
                assert _comparable(first / rel) == want, rel
                compared += 1
    assert compared == 2 * 4 + 4  # per run: 2 models, history, summary; 4 evaluations
    # The tables hold the plain build's rows of these runs, value for value (wall-clock times aside).
    for rel, column in (("results/smoke/fig1/results.csv", "path"), ("results/smoke/fig1/curves.csv", "run")):
        got, want = (pd.read_csv(root / rel) for root in (first, plain))
        want = want[want[column].str.contains(at_eps)]
        got, want = (t.drop(columns=[c for c in t.columns if "seconds" in c]).sort_values(column, kind="stable")
                     .reset_index(drop=True) for t in (got, want))
        assert len(got) and len(got) == len(want), rel
        pd.testing.assert_frame_equal(got, want, check_dtype=False)
    # The checkpoints are even byte-identical (nothing in them records a time).
    hf, hp = tree_hashes(first, "runs/smoke"), tree_hashes(plain, "runs/smoke")
    models = [r for r in hf if Path(r).name.startswith("model_")]
    assert len(models) == 4 and all(hf[r] == hp[r] for r in models)


@pytest.mark.slow
def test_push_pull_restores_outputs_and_touch_makes_snakemake_up_to_date(built):
    tmp, work = built["tmp"], built["work"]
    remote = tmp / "remote"
    dvc(work, "remote", "add", "-d", "local", str(remote))
    dvc(work, "push")
    sh(work, "git", "add", "-A")
    sh(work, "git", "commit", "-q", "-m", "results: smoke")
    sh(work, "git", "push", "-q", "origin", "HEAD")
    before = tree_hashes(work, *OUTPUTS)
    assert before == built["snapshot"]

    # Same clone: outputs and cache deleted, pulled back.
    for p in ("runs", "results", ".dvc/cache", "data/cifar10.npz"):
        shutil.rmtree(work / p) if (work / p).is_dir() else (work / p).unlink()
    dvc(work, "pull", "--with-deps", STAGE)
    assert tree_hashes(work, *OUTPUTS) == before

    # A collaborator: fresh clone, no cache, no .snakemake metadata, no data source needed.
    other = clone(built["origin"], tmp / "collaborator")
    dvc(other, "pull", "--with-deps", STAGE)
    assert tree_hashes(other, *OUTPUTS) == before
    for wd in (work, other):
        snakemake(wd, "--cores", "1", "--touch", TARGET)
        assert planned(wd) == {}
        assert "up to date" in out(dvc(wd, "status", STAGE))
        assert tree_hashes(wd, *OUTPUTS) == before
    # Re-rendering the figure needs no training: only the figure rule would run.
    (other / TARGET).unlink()
    assert planned(other) == {"draw_accuracy_figure": 1}
    dvc(other, "checkout", STAGE)  # and DVC puts it back
    assert tree_hashes(other, *OUTPUTS) == before


@pytest.mark.slow
def test_one_hyperparameter_reruns_only_its_method(built):
    work = built["work"]
    # The run folders as `fastadv train` left them after the first repro: the pull above
    # brought back everything DVC versions, but not the resume state (state.pt).
    for st in built["first"].glob("runs/smoke/**/state.pt"):
        shutil.copy(st, work / st.relative_to(built["first"]))
    params = work / "params.yaml"
    assert GRADALIGN in params.read_text()
    params.write_text(params.read_text().replace(GRADALIGN, GRADALIGN_CHANGED))
    # Stage level: the scale stage reads `variants`; the data stage does not.
    status = out(dvc(work, "status", "data", STAGE))
    assert STAGE in status and "variants" in status and "data:" not in status, status

    before = tree_hashes(work, "runs/smoke", "results/smoke")
    logs = {p: p.stat().st_mtime_ns for p in (work / "logs/train_model/smoke/fig1").rglob("*.log")}
    log = out(dvc(work, "repro", STAGE, merge=True))
    assert "Running stage 'data'" not in log and f"Running stage '{STAGE}'" in log, log[-3000:]
    # Job level: Snakemake inside the stage retrained and re-evaluated only the gradalign runs.
    assert job_stats(log) == {"train_model": 1, "evaluate_model": 2, "collect_results": 1, "draw_accuracy_figure": 1,
                              "collect_curves": 1}, log[-3000:]
    for p, mtime in logs.items():
        assert (p.stat().st_mtime_ns == mtime) == ("/fgsm/" in str(p)), p
    now = tree_hashes(work, "runs/smoke", "results/smoke")
    assert {p: h for p, h in now.items() if "/fgsm/" in p} == {p: h for p, h in before.items() if "/fgsm/" in p}
    ga = "runs/smoke/fig1/gradalign/eps4/seed0/model_final.pt"
    assert now[ga] != before[ga]
    for cfg in work.glob("runs/smoke/fig1/gradalign/*/seed0/config.yaml"):  # the new value is what ran
        assert yaml.safe_load(cfg.read_text())["method"]["gradalign"]["lambda"] == 0.5, cfg
    table = pd.read_csv(work / "results/smoke/fig1/results.csv")
    assert len(table) == 2 * 1 * 2 and table["train_status"].isin(FINISHED).all()
    # Both tools agree that everything is up to date afterwards.
    assert "Running stage" not in out(dvc(work, "repro", STAGE, merge=True))
    assert planned(work) == {}
