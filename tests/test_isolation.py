"""A native crash during the suite names its test and, under @pytest.mark.isolated, fails only that test.

Both run pytest in a subprocess on a throw-away test file, with this project's pytest configuration
(pyproject.toml: the options `make test`, hence CI, runs with)."""
from __future__ import annotations

import os
import subprocess
import sys

from tests.helpers import REPO

CRASHING_TESTS = '''
import ctypes, time, pytest

def test_before():
    pass

@pytest.mark.isolated
def test_segfaults():
    ctypes.string_at(0)

@pytest.mark.isolated(timeout=6)
def test_hangs():
    time.sleep(120)

@pytest.mark.isolated(env={"PROBE": "from the marker"})
def test_sees_the_marker_env():
    assert os.environ["PROBE"] == "from the marker"

def test_after():
    pass

def test_segfaults_unmarked():
    ctypes.string_at(0)
'''


def _pytest(tmp_path, *args):
    (tmp_path / "test_native.py").write_text("import os\n" + CRASHING_TESTS)
    env = {k: v for k, v in os.environ.items() if k != "FASTADV_ISOLATED_CHILD"}
    env["PYTHONPATH"] = str(REPO)
    cmd = [sys.executable, "-m", "pytest", "-c", str(REPO / "pyproject.toml"), "--rootdir", str(tmp_path),
           "-p", "tests.isolation", "-p", "no:cacheprovider", str(tmp_path / "test_native.py"), *args]
    return subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)


def test_a_crash_or_hang_in_an_isolated_test_fails_that_test_and_the_suite_goes_on(tmp_path):
    proc = _pytest(tmp_path, "-k", "not unmarked")
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out  # tests failed; pytest itself did not die
    assert "test_native.py::test_segfaults: the test process died of SIGSEGV" in out
    assert "Fatal Python error: Segmentation fault" in out and "in test_segfaults" in out  # the child's trace
    assert "test_native.py::test_hangs: the test process hung for 6 s and was killed" in out
    assert "in test_hangs" in out  # the hung child's stack, dumped before it was killed
    assert "2 failed, 3 passed" in out


def test_a_crash_in_an_unmarked_test_leaves_the_test_name_and_its_stack_in_the_log(tmp_path):
    proc = _pytest(tmp_path, "-k", "unmarked or before")
    assert proc.returncode < 0  # the interpreter died: nothing after it ran
    assert "test_native.py::test_before PASSED" in proc.stdout
    assert proc.stdout.rstrip().endswith("test_native.py::test_segfaults_unmarked")  # -v: named before it ran
    assert "Fatal Python error: Segmentation fault" in proc.stderr and "in test_segfaults_unmarked" in proc.stderr
