"""The CLI's surface (issue 40): `fastadv --help` by group, every command with help text, and `fastadv run`, which
calls Snakemake with its arguments in the order Snakemake parses as meant (the `--config` trap)."""
import subprocess
import sys
from pathlib import Path

import pytest

from fastadv.cli import GROUPS, build_parser
from fastadv.workflow.run import snakemake_command
from tests.helpers import copy_workflow, snakemake

FASTADV = str(Path(sys.executable).parent / "fastadv")


def test_help_lists_every_command_once_users_first_each_with_help_text():
    parser = build_parser()
    commands = parser._subparsers._group_actions[0].choices
    grouped = [n for names in GROUPS.values() for n in names]
    assert sorted(grouped) == sorted(commands) and len(set(grouped)) == len(grouped)
    assert all(commands[n].description for n in commands), [n for n in commands if not commands[n].description]
    text = parser.format_help()
    positions = [text.index(f"\n  {n} ") for n in grouped]
    assert positions == sorted(positions)  # in GROUPS' order, the maintainers' tools last
    assert text.index("Maintainer tools:") > max(text.index(f"\n  {n} ") for n in ("train", "evaluate", "methods"))


def test_the_snakemake_command_puts_the_targets_before_config():
    cmd = snakemake_command(["results/fig1.pdf", "results/figA.pdf"], scale="quick", cores="2",
                            profile="workflow/profiles/slurm", dry_run=True)
    assert cmd == ["snakemake", "--cores", "2", "--profile", "workflow/profiles/slurm", "-n", "results/fig1.pdf",
                   "results/figA.pdf", "--config", "scale=quick"]
    assert snakemake_command(["results/fig1.pdf"]) == ["snakemake", "--cores", "all", "results/fig1.pdf"]


def _run(cwd, *args):
    return subprocess.run([FASTADV, "run", *args], cwd=cwd, capture_output=True, text=True)


def test_fastadv_run_plans_the_scale_it_is_given_where_snakemake_alone_falls_into_the_trap(tmp_path):
    wf = copy_workflow(tmp_path)
    trap = snakemake(wf, "-n", "--cores", "2", "--config", "scale=smoke", "results/fig1.pdf", check=False)
    assert trap.returncode != 0  # Snakemake read the target as a config pair: the order trap is real
    r = _run(wf, "results/fig1.pdf", "--scale", "smoke", "--cores", "2", "-n")
    assert r.returncode == 0, r.stderr[-3000:]
    assert "runs/smoke/fig1/" in r.stdout and "runs/paper/" not in r.stdout  # the scale that won is planned
    assert "--config scale=smoke" in r.stderr.splitlines()[0]


@pytest.mark.parametrize("args, message", [
    (["results/fig1.pdf", "--scale", "huge"], "fastadv: error: unknown scale 'huge'; valid: paper, quick, smoke"),
    (["results/fig1.pdf", "--profile", "nowhere"], "fastadv: error: no Snakemake profile at 'nowhere'"),
])
def test_fastadv_run_refuses_bad_input_in_one_line_before_snakemake_starts(tmp_path, args, message):
    wf = copy_workflow(tmp_path)
    r = _run(wf, *args)
    assert r.returncode == 2 and r.stderr.strip().startswith(message) and len(r.stderr.strip().splitlines()) == 1
    assert not (wf / ".snakemake").exists()


def test_fastadv_run_outside_the_checkout_says_where_to_run_it(tmp_path):
    r = _run(tmp_path, "results/fig1.pdf")
    assert r.returncode == 2 and "no Snakefile in" in r.stderr


def test_the_params_file_flag_is_params_and_the_former_config_still_works_with_a_note(tmp_path, capsys):
    """One name per concept: `--params FILE` (Snakemake's `--config` means key=value pairs). The former spelling
    reads the same file, says so in one line, and the file it names is the one used."""
    import yaml

    from fastadv.cli import main
    from tests.helpers import PARAMS

    params = yaml.safe_load(PARAMS.read_text())
    params["train"]["optim"]["epochs"] = 7
    own = tmp_path / "own.yaml"
    own.write_text(yaml.safe_dump(params))
    assert main(["config", "--params", str(own), "--all"]) == 0
    new = capsys.readouterr()
    assert yaml.safe_load(new.out)["optim"]["epochs"] == 7 and new.err == ""
    assert main(["config", "--config", str(own), "--all"]) == 0
    old = capsys.readouterr()
    assert old.out == new.out
    assert old.err.strip() == "fastadv: note: --config FILE is now --params FILE (Snakemake's --config takes key=value pairs)"
    usage = build_parser()._subparsers._group_actions[0].choices["train"].format_usage()
    assert "--params FILE" in usage and "--config" not in usage  # the former spelling is read, not offered
