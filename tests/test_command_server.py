"""The tests' ``fastadv`` and ``snakemake`` (tests/command_server.py) stand for the installed commands: the same exit
codes and streams, signals relayed, nothing left running when one is killed, and the installed command where the
environment differs. The workflow and DVC tests run through them, so a difference here would be a difference there."""
import os
import signal
import subprocess
import time

from fastadv.training.launch import EXIT_PREEMPTED
from tests.command_server import BIN, command_path, served
from tests.helpers import PARAMS


def run(exe, *args, extra=None):
    env = {**os.environ, "PATH": command_path(), **(extra or {})}
    return subprocess.run([exe, *args], capture_output=True, text=True, env=env, timeout=120)


def long_training(tmp_path, synthetic_root):
    """A training that runs for many seconds unless stopped (``fastadv train``'s arguments)."""
    sets = [f"data.root={synthetic_root}", "data.dataset=svhn", "optim.epochs=200", "model.width=4",
            "runtime.threads=1", "runtime.progress=never", "runtime.checkpoint_every=1"]
    return ["train", "--params", str(PARAMS), "--scale", "smoke", "--out", str(tmp_path / "run"),
            *[a for s in sets for a in ("--set", s)]]


def start_and_wait_for_its_run(argv, run_dir):
    proc = subprocess.Popen(["fastadv", *argv], env={**os.environ, "PATH": command_path()}, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while not (run_dir / "config.yaml").exists():  # written as the run starts
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    return proc


def test_a_forked_command_exits_and_writes_as_the_installed_one(tmp_path):
    before = len(served())
    commands = (["fastadv", "--version"], ["fastadv", "train", "--out", str(tmp_path / "r"), "--set", "method.nope=1"],
                ["fastadv", "nope"], ["snakemake", "--version"], ["snakemake", "--snakefile", str(tmp_path / "none")])
    for program, *args in commands:
        forked, installed = run(program, *args), run(str(BIN / program), *args)
        assert (forked.returncode, forked.stdout, forked.stderr) == (
            installed.returncode, installed.stdout, installed.stderr), args
    assert [[r["program"], r["argv"][0]] for r in served()[before:]] == [argv[:2] for argv in commands]
    assert installed.returncode == 1 and "not found" in installed.stderr  # the last: Snakemake's error, not a crash


def test_a_job_whose_environment_differs_at_start_runs_the_installed_command():
    before = len(served())
    for extra in ({"OMP_NUM_THREADS": "2"}, {"ONEDNN_MAX_CPU_ISA": "AVX2"}, {"PYTHONPATH": "/nowhere"}):
        r = run("fastadv", "--version", extra=extra)
        assert r.returncode == 0 and r.stdout.startswith("fastadv "), r.stderr
    assert len(served()) == before
    assert run("fastadv", "--version").returncode == 0 and len(served()) == before + 1


def test_sigterm_to_the_command_reaches_the_training(tmp_path, synthetic_root):
    proc = start_and_wait_for_its_run(long_training(tmp_path, synthetic_root), tmp_path / "run")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == EXIT_PREEMPTED and "pre-empted" in err, err


def test_a_killed_command_leaves_no_training_running(tmp_path, synthetic_root):
    proc = start_and_wait_for_its_run(long_training(tmp_path, synthetic_root), tmp_path / "run")
    pid = served()[-1]["pid"]
    assert served()[-1]["argv"][0] == "train" and os.path.exists(f"/proc/{pid}")
    proc.kill()
    proc.wait()
    deadline = time.monotonic() + 30
    while os.path.exists(f"/proc/{pid}"):
        assert time.monotonic() < deadline, "the forked training outlived its command"
        time.sleep(0.05)
