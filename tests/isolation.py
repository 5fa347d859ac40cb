"""``@pytest.mark.isolated``: run a test in a fresh pytest process of its own.

Tests that exercise native kernels in unusual configurations (channels-last convolutions, float16
autocast on the CPU, oneDNN restricted to one instruction set) can crash the interpreter: a segfault
in a kernel kills the whole pytest process, no later test runs and nothing says which ones passed.
Run in a child process, such a crash fails that one test with the signal's name and the child's
output (Python's faulthandler traceback included), and the suite goes on.

``@pytest.mark.isolated(env={"ONEDNN_MAX_CPU_ISA": "AVX2"}, timeout=600)`` sets environment variables
for the child (read by native libraries at their first use, so they need a fresh process) and the
seconds after which a hung child is killed and the test failed.

Loaded by tests/conftest.py (the marker is declared in pyproject.toml); ``-p tests.isolation`` loads it
elsewhere (tests/test_isolation.py).
"""
from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest

CHILD = "FASTADV_ISOLATED_CHILD"  # set in the child: there the test runs in-process
DEFAULT_TIMEOUT = 900


def _outcome(proc: subprocess.CompletedProcess) -> str:
    if proc.returncode < 0:
        return f"the test process died of {signal.Signals(-proc.returncode).name}"
    return f"the test process exited with code {proc.returncode}"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    marker = pyfuncitem.get_closest_marker("isolated")
    if marker is None or os.environ.get(CHILD):
        return None  # the ordinary in-process call
    env = {**os.environ, CHILD: "1", "PYTHONFAULTHANDLER": "1", **marker.kwargs.get("env", {})}
    timeout = marker.kwargs.get("timeout", DEFAULT_TIMEOUT)
    # The child needs no hook (CHILD makes it run the test in-process); faulthandler_timeout: a hung child
    # prints its threads' stacks before it is killed.
    cmd = [sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-rs", "-p", "no:cacheprovider",
           "-o", "addopts=", "-o", f"faulthandler_timeout={max(1, timeout - 3)}"]
    alone = f"run alone: {CHILD}=1 python {' '.join(cmd[1:5])}"
    try:
        proc = subprocess.run(cmd, cwd=pyfuncitem.config.rootpath, env=env, capture_output=True, text=True,
                              timeout=timeout)
    except subprocess.TimeoutExpired as e:
        proc, hung = None, (e.stdout or b"").decode(errors="replace") + (e.stderr or b"").decode(errors="replace")
    if proc is None:
        pytest.fail(f"{pyfuncitem.nodeid}: the test process hung for {timeout} s and was killed ({alone})\n"
                    f"{hung[-6000:]}", pytrace=False)
    out = proc.stdout + proc.stderr
    last = out.strip().splitlines()[-1] if out.strip() else ""
    if proc.returncode != 0:
        crash = out.find("Fatal Python error")  # faulthandler's report: the native frame's Python stack
        pytest.fail(f"{pyfuncitem.nodeid}: {_outcome(proc)} ({alone})\n{out[crash:][:6000] if crash >= 0 else out[-6000:]}",
                    pytrace=False)
    if " passed" not in last:
        if " skipped" in last:
            pytest.skip(f"in its own process: {out[-500:]}")
        pytest.fail(f"{pyfuncitem.nodeid}: the test process ran no test ({last!r})", pytrace=False)
    return True
