"""CI's own checks (.ci/): after the suite the checkout is as it was (issue 38: a test once rewrote the committed
dvc.yaml, and the change was committed)."""
import os
import subprocess
import sys

import pytest

from tests.helpers import REPO

CHECK = REPO / ".ci" / "check_tree"


def _git(cwd, *args):
    subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=cwd, check=True,
                   capture_output=True)


@pytest.fixture
def checkout(tmp_path):
    _git(tmp_path, "init", "-q")
    (tmp_path / ".gitignore").write_text("/runs/\n")
    (tmp_path / "dvc.yaml").write_text("metrics: []\n")
    (tmp_path / "params.yaml").write_text("scale: paper\n")
    _git(tmp_path, "add", "-A")
    _git(tmp_path, "commit", "-qm", "init")
    return tmp_path


@pytest.mark.parametrize("change, line", [
    (lambda d: (d / "dvc.yaml").write_text("metrics:\n- /tmp/pytest-of-root/run/dvclive/metrics.json\n"), " M dvc.yaml"),
    (lambda d: (d / "params.yaml").unlink(), " D params.yaml"),
    (lambda d: (_git(d, "mv", "params.yaml", "p.yaml")), "R  params.yaml -> p.yaml"),
    (lambda d: (d / "stray.csv").write_text("x\n"), "?? stray.csv"),
    (lambda d: ((d / "new").mkdir(), (d / "new" / "f.txt").write_text("x")), "?? new/f.txt"),
])
def test_check_tree_fails_naming_what_the_suite_left(checkout, change, line):
    change(checkout)
    r = subprocess.run([str(CHECK), str(checkout)], capture_output=True, text=True)
    assert r.returncode == 1 and line in r.stderr.splitlines(), r.stderr


def test_check_tree_passes_a_clean_tree_with_ignored_outputs(checkout):
    (checkout / "runs").mkdir()
    (checkout / "runs" / "model_final.pt").write_bytes(b"x")
    r = subprocess.run([str(CHECK), str(checkout)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_ci_runs_the_readme_test_command_then_the_tree_check():
    lines = [ln for ln in (REPO / ".ci" / "run").read_text().splitlines() if ln and not ln.startswith("#")]
    assert lines[lines.index("make test") + 1] == ".ci/check_tree"


def _junit(path, cases, slow=()):
    rows = "".join(f'<testcase classname="{c.rsplit("::", 1)[0][:-3].replace("/", ".")}" name="{c.rsplit("::", 1)[1]}" '
                   f'time="{t}">' + ('<properties><property name="marker" value="slow"/></properties>' if c in slow
                                     else "") + "</testcase>" for c, t in cases.items())
    path.write_text(f'<testsuites><testsuite name="pytest" time="{sum(cases.values())}">{rows}</testsuite></testsuites>')
    return path


def _budget():
    import importlib.util

    spec = importlib.util.spec_from_file_location("test_budget", REPO / "benchmarks" / "test_budget.py")
    budget = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(budget)
    return budget


def test_budget_names_a_long_test_not_marked_slow_and_a_suite_over_budget(tmp_path, capsys):
    """benchmarks/test_budget.py reads `make test`'s JUnit report (issue 39), the slow marks included."""
    budget = _budget()
    slow = "tests/test_faults.py::test_sigkill_at_random_moments_then_rerun_gives_identical_weights"
    quick = "tests/test_ci.py::test_ci_runs_the_readme_test_command_then_the_tree_check"
    one = ["--slowdown", "1"]
    assert budget.main([str(_junit(tmp_path / "a.xml", {slow: 200.0, quick: 1.0}, [slow])), *one]) == 0
    assert budget.main([str(_junit(tmp_path / "a2.xml", {slow: 200.0, quick: 1.0})), *one]) == 1  # unmarked: flagged
    capsys.readouterr()
    assert budget.main([str(_junit(tmp_path / "b.xml", {slow: 200.0, quick: 31.0}, [slow])), *one]) == 1
    assert f"test_budget: 31.0 s at the reference's speed (31.0 s here) > 30 s, not marked slow: {quick}" in (
        capsys.readouterr().out)
    over = str(_junit(tmp_path / "c.xml", {slow: budget.SUITE_BUDGET_S + 2.0}, [slow]))
    assert budget.main([over, *one]) == 1
    assert "OVER BUDGET" in capsys.readouterr().out
    # The budget is at the reference machine's speed: the same seconds on a machine twice as slow are within it
    assert budget.main([over, "--slowdown", "2"]) == 0
    out = capsys.readouterr().out
    assert f"{(budget.SUITE_BUDGET_S + 2) / 2:.0f} s at its speed" in out and "within budget" in out
    assert budget.main([str(_junit(tmp_path / "d.xml", {quick: 31.0})), "--slowdown", "1.1"]) == 0  # 28.2 s there
    with pytest.raises(SystemExit) as e:
        budget.main([over, "--slowdown", "0"])
    assert e.value.code == 2 and "--slowdown 0: must be > 0" in capsys.readouterr().err


def test_a_module_kept_together_runs_on_one_worker_and_the_others_spread(tmp_path):
    """`make test`'s two workers (tests/conftest.py): a ONE_WORKER module's tests share one worker (its module
    fixture is made once; the SLURM cluster is machine-wide), other tests go to whichever worker is free. Checked
    by a real two-worker run of throw-away modules, as xdist's own grouping once silently did nothing. The JUnit
    report it writes names the tests marked slow, as benchmarks/test_budget.py reads them."""
    from tests.conftest import ONE_WORKER

    assert all((REPO / "tests" / f"{m}.py").is_file() for m in ONE_WORKER), ONE_WORKER
    (tmp_path / "conftest.py").write_text("from tests.conftest import (pytest_collection_modifyitems,  # noqa: F401\n"
                                          "                            pytest_xdist_make_scheduler)\n")
    body = "import os, pathlib, time\nimport pytest\n" + "".join(
        ("@pytest.mark.slow\n" if i == 0 else "") +
        f"def test_{i}():\n    time.sleep(0.3)\n    pathlib.Path(__file__).with_name(__name__ + '_{i}').write_text("
        f"os.environ['PYTEST_XDIST_WORKER'])\n" for i in range(4))
    for name in ("test_slurm", "test_spread"):
        (tmp_path / f"{name}.py").write_text(body)
    r = subprocess.run([sys.executable, "-m", "pytest", "-n", "2", "-q", "-p", "no:cacheprovider", "-o", "addopts=",
                        "--junitxml", str(tmp_path / "junit.xml"), "--rootdir", str(tmp_path), str(tmp_path)],
                       cwd=tmp_path, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0 and "8 passed" in r.stdout, r.stdout + r.stderr
    _, tests, slow = _budget().durations(tmp_path / "junit.xml")
    assert len(tests) == 8 and slow == {"test_slurm.py::test_0", "test_spread.py::test_0"}, (tests, slow)
    worker = {p.name: p.read_text() for p in tmp_path.glob("test_*_[0-9]")}
    assert len({w for n, w in worker.items() if n.startswith("test_slurm")}) == 1, worker
    assert len(set(worker.values())) == 2, worker
