"""Every command the README and the documentation site (docs/**/*.md) print in a ```bash block is listed here
with how the suite runs it: as printed (``run``), as printed plus a dry-run flag (``dry``: the plan, not the hours
of training), as printed expecting the documented refusal (``refused``), or not, with the reason (``skip``). A
command added to a page and not listed here fails the first test, so the docs and what is tested cannot drift
apart."""
import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO, data_source

BIN = str(Path(sys.executable).parent)
RUN, DRY, REFUSED = "run", "dry", "refused"


def skip(reason):
    return ("skip", reason)


COMMANDS = {
    "make demo": skip("the demo itself (20 min); run from a fresh clone before every release (README)"),
    "make test": skip("this suite"),
    "fastadv estimate demo": RUN,
    "make sweep": skip("the sweep itself (1.5 h on 2 cores); tests/test_sweep.py plans it and draws its figure"),
    "fastadv prepare --dataset cifar10 --source ../shared/data": RUN,
    "fastadv train --out runs/fgsm_eps8": REFUSED,
    "fastadv train --scale smoke --set method.name=gradalign --set method.eps=16 --out runs/ga16": RUN,
    "fastadv config --scale quick --set method.name=pgd": RUN,
    "fastadv --version": RUN,
    "fastadv evaluate --model runs/fgsm_eps8/model_final.pt --out r.json": skip("needs the paper-scale model of "
                                                                               "the train line (GPU hours)"),
    "fastadv fidelity --model runs/fgsm_eps8/model_final.pt --out fidelity.md": skip("needs the same model"),
    "fastadv lemma2 --out lemma2.md": skip("minutes of Monte Carlo; the workflow test runs check_lemma2"),
    "fastadv digitize FIG.png --spec docs/digitize/fig1.yaml --out values.csv": skip("FIG.png stands for a figure "
                                                                                     "of yours"),
    "snakemake --cores 2 results/fig1.pdf --config scale=quick": DRY,
    "make smoke": skip("the same targets as the workflow tests, which run them"),
    "snakemake --cores all results/fig1.pdf": DRY,
    "snakemake --cores all results/fig1.pdf --resources gpu=4": DRY,
    "snakemake --profile workflow/profiles/slurm results/fig1.pdf": skip("a SLURM cluster: tests/test_slurm.py "
                                                                         "runs the profile on one"),
    "torchrun --nproc_per_node=4 -m fastadv train --scale paper --set method.name=gradalign --out runs/ga8":
        skip("4 GPUs; tests/test_distributed.py runs torchrun with 2 CPU ranks"),
    "srun --ntasks=8 --ntasks-per-node=4 --gpus-per-task=1 fastadv train …": skip("2 GPU nodes; tests/test_slurm.py "
                                                                                  "runs srun with 2 tasks"),
    "snakemake --cores all results/paper/table6.md": DRY,
    "fastadv run results/fig1.pdf --scale quick --cores 2": DRY,
    "fastadv run results/fig1.pdf --profile workflow/profiles/slurm": DRY,
    "snakemake --profile workflow/profiles/slurm results/paper/table6.md": skip(
        "a SLURM cluster with GPUs: tests/test_slurm.py runs the imagenet experiment's CPU size with 2 tasks per run"),
    ".venv/bin/dvc repro": DRY,
    ".venv/bin/dvc metrics show": skip("shows results a repro made; tests/test_dvc.py"),
    ".venv/bin/dvc plots show": skip("shows results a repro made; tests/test_dvc.py"),
    ".venv/bin/dvc plots show runs/smoke/fig1/gradalign/eps16/seed0/history.csv -x epoch -y test_pgd_acc":
        skip("shows a history a repro made; tests/test_dvc.py"),
    ".venv/bin/dvc push": skip("a remote of yours; tests/test_dvc.py pushes to a local one"),
    "make pull": skip("a remote of yours; tests/test_dvc.py pulls from a local one"),
    "fastadv digitize fig1_robustnes_diff_eps_cifar10.png --spec docs/digitize/fig1.yaml --out fig1.csv "
    "--published fig1.yaml": skip("the paper's figure is not shipped (shared/reference); tests/test_digitize.py"),
    "fastadv figure published --out docs/published_fig1_fig8.pdf": RUN,
    'fastadv import --from official "models/2020-03-19 … eps=8.0 ….pth" --out ga8.pt --which best':
        skip("the official file is a download; tests/test_zoo.py imports files written as its train.py writes them"),
    "fastadv import --from wong model.pth --out wong.pt --eps 8": skip("Wong et al.'s file is a download; "
                                                                      "tests/test_zoo.py writes one as they do"),
    "fastadv import --from robustbench Andriushchenko2020Understanding --model-dir models --out ra.pt":
        skip("RobustBench's file or a network; tests/test_zoo.py places one in its model_dir layout"),
    "fastadv evaluate --model ga8.pt --out ga8.json --set autoattack=true --set restart_rule=both":
        skip("needs the imported model of the lines above; tests/test_zoo.py evaluates an imported file"),
    "snakemake --cores 2 results/smoke/zoo.md": DRY,
    "snakemake --cores 2 results/paper/cnn4.md results/paper/cnn4_fig5.pdf results/paper/cnn4_fig6.pdf "
    "results/paper/cnn4_fig7.pdf results/paper/cnn4_fig11.pdf results/paper/lemma2.md": DRY,
}
def dry(command: str) -> str:
    """The command as printed, planning only: snakemake -n, fastadv run -n, dvc repro --dry."""
    tool, rest = command.split(" ", 1)
    if tool == "snakemake":
        return f"snakemake -n {rest}"
    return f"{command} -n" if command.startswith("fastadv run ") else f"{command} --dry"


def documented_commands() -> list[str]:
    """Command lines of the bash blocks of the README and the docs' pages: comments dropped, continuation lines
    joined."""
    pages = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
    out = []
    for block in (b for page in pages for b in re.findall(r"```bash\n(.*?)```", page.read_text(), re.S)):
        text = re.sub(r"\\\n\s*", "", block)
        for line in text.splitlines():
            line = re.sub(r"\s+#.*$", "", line).strip()
            if line and not line.startswith("#"):
                out.append(re.sub(r"\s+", " ", line))
    return out


def test_every_documented_command_is_listed_with_how_it_is_tested():
    printed = documented_commands()
    assert sorted(set(printed)) == sorted(COMMANDS), (sorted(set(printed) - set(COMMANDS)),
                                                      sorted(set(COMMANDS) - set(printed)))


@pytest.fixture(scope="module")
def project(tmp_path_factory):
    """A copy of the repository's files as a user has them after `make setup`, with ../shared/data beside it."""
    src = data_source()
    if src is None:
        pytest.skip("offline data copy not found (../shared/data or $FASTADV_DATA_SOURCE)")
    root = tmp_path_factory.mktemp("readme")
    tracked = subprocess.run(["git", "ls-files"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    for name in tracked.splitlines():
        if (REPO / name).is_file() and not (REPO / name).is_symlink():
            (root / "p" / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(REPO / name, root / "p" / name)
    (root / "p/.venv").symlink_to(REPO / ".venv")
    (root / "shared").mkdir()
    (root / "shared/data").symlink_to(src)
    subprocess.run(["git", "init", "-q"], cwd=root / "p", check=True)
    return root / "p"


def _run(project, command: str):
    env = {**os.environ, "PATH": BIN + os.pathsep + os.environ["PATH"], "DVC_NO_ANALYTICS": "1"}
    env.pop("FASTADV_DATA_SOURCE", None)  # the README's commands name their source themselves
    return subprocess.run(shlex.split(command), cwd=project, env=env, capture_output=True, text=True, timeout=1200)


@pytest.mark.slow
@pytest.mark.parametrize("command", [c for c, how in COMMANDS.items() if how in (RUN, DRY, REFUSED)])
def test_readme_command_works_as_printed(command, project):
    how = COMMANDS[command]
    if "train --scale smoke" in command or command.startswith((".venv/bin/dvc", "snakemake", "fastadv run")):
        if not (project / "data/cifar10.npz").exists():  # the README's order: prepare first
            assert _run(project, "fastadv prepare --dataset cifar10 --source ../shared/data").returncode == 0
    if how == DRY:
        command = dry(command)
    r = _run(project, command)
    if how == REFUSED:
        assert r.returncode == 2 and r.stderr.strip().splitlines()[-1].startswith(
            "fastadv: error: refusing to train at scale paper"), r.stderr[-2000:]
        return
    assert r.returncode == 0, f"{command}\n{r.stdout[-2000:]}\n{r.stderr[-3000:]}"
