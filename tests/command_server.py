"""``fastadv`` and ``snakemake`` started as forks of one process that imported them and torch once: the commands of
the tests' Snakemake and DVC runs.

A job of the smoke workflow is seconds of work after ~3 s of imports (``import torch`` 1.6 CPU-s, ``torch._dynamo``
1.5, which torch's optimisers import at their first use), a Snakemake run ~0.9 CPU-s of imports; the suite starts
~200 such commands. Here the tests put a ``fastadv`` and a ``snakemake`` of their own first on PATH
(:func:`command_path`): standard-library scripts that hand their arguments, working directory, environment and
standard streams (the file descriptors themselves) to a server, which forks a process for the command: a child that
already holds the imports calls the function the installed script calls (``fastadv.cli:main``,
``snakemake.cli:main``) with the job's streams, folder and environment. The script relays the signals it gets to the
child (Snakemake's SIGTERM, a test's SIGINT) and exits as the child did, its code or its signal; a script killed
outright (SIGKILL) takes the child with it. Where the environment differs from the server's in a variable read as
Python, torch, OpenMP or BLAS start (threads, oneDNN's instruction set, ``PYTHONPATH``, …), the script runs the
installed command instead, so a fork never stands for a process it is not (tests/test_command_server.py).

Tests whose subject is the process itself (the README's commands, the installed wheel, SLURM's jobs, torchrun's
ranks, the fault tests' kills) start the installed commands: they never put these on PATH.
"""
from __future__ import annotations

import atexit
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent  # the venv's installed commands
# The commands served, each with the function its installed script calls (pyproject's and Snakemake's entry points).
PROGRAMS = {"fastadv": "fastadv.cli:main", "snakemake": "snakemake.cli:main"}
SERVED_LOG = "served.jsonl"  # beside the scripts: a line per command the server forked (pid, program, arguments)
# Environment variables read as Python, torch, OpenMP or oneDNN start, or that choose what is imported: a job whose
# values differ from the server's runs the installed command (the script compares them, by these prefixes).
AT_START = ("PYTHON", "OMP_", "MKL_", "KMP_", "GOMP_", "OPENBLAS_", "GOTO_", "VECLIB_", "NUMEXPR_", "ONEDNN_", "DNNL_",
            "ATEN_", "TORCH", "PYTORCH_", "CUDA_", "NVIDIA_", "LD_", "MPL", "LC_", "LANG")

# The script: standard library only, started with -S (no site-packages: ~10 ms). Placeholders filled by _start.
SCRIPT = '''#!{python} -S
import json, os, signal, socket, struct, sys
PROGRAM, SERVER, INSTALLED = {program!r}, {server!r}, {installed!r}
AT_START, SERVED, BY_IMPORTS = {at_start!r}, {served!r}, {by_imports!r}
env = dict(os.environ)
at_start = {{k: v for k, v in env.items() if k.startswith(AT_START) and BY_IMPORTS.get(k) != v}}
if not os.path.exists(SERVER) or at_start != SERVED:
    os.execv(INSTALLED, [INSTALLED, *sys.argv[1:]])
fds = []
for fd in (0, 1, 2):
    try:
        os.fstat(fd)
        fds.append(fd)
    except OSError:  # a closed stream: the child gets /dev/null there
        fds.append(os.open(os.devnull, os.O_RDWR))
s = socket.socket(socket.AF_UNIX)
s.connect(SERVER)
msg = json.dumps({{"program": PROGRAM, "argv": sys.argv[1:], "cwd": os.getcwd(), "env": env}}).encode()
socket.send_fds(s, [struct.pack("!I", len(msg)) + msg], fds)
reply = s.makefile("r")
pid = int(reply.readline())
for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
    signal.signal(sig, lambda n, _: os.kill(pid, n))
line = reply.readline()
code = int(line) if line else 1
if code < 0:  # ended by a signal: end by the same one
    signal.signal(-code, signal.SIG_DFL)
    os.kill(os.getpid(), -code)
sys.exit(code)
'''


def command_path() -> str:
    """A PATH on which ``fastadv`` and ``snakemake`` are forks of this worker's server (started at the first call):
    the scripts' folder, then this venv's bin (DVC, torchrun), then the rest."""
    global _FOLDER
    if _FOLDER is None:
        _FOLDER = _start()
    return os.pathsep.join([str(_FOLDER), str(BIN), os.environ["PATH"]])


_FOLDER: Path | None = None


def served() -> list[dict]:
    """The commands this worker's server forked so far, in order: ``{"pid": …, "program": …, "argv": [...]}``."""
    log = Path(command_path().split(os.pathsep)[0]) / SERVED_LOG
    return [json.loads(line) for line in log.read_text().splitlines()] if log.exists() else []


def _start() -> Path:
    folder = Path(tempfile.mkdtemp(prefix="fastadv-commands-"))
    server = folder / "server.sock"
    proc = subprocess.Popen([sys.executable, "-m", "tests.command_server", str(server)], cwd=REPO,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, text=True)
    ready, _, started = proc.stdout.readline().partition(" ")
    assert ready == "ready", f"the command server did not start (exit {proc.poll()})"

    def stop():
        proc.kill()
        proc.wait()
        for p in folder.iterdir():
            p.unlink()
        folder.rmdir()

    atexit.register(stop)
    for program in PROGRAMS:
        script = folder / program
        script.write_text(SCRIPT.format(python=sys.executable, program=program, server=str(server),
                                        installed=str(BIN / program), at_start=AT_START, **json.loads(started)))
        script.chmod(0o755)
    return folder


def _die_with_parent() -> None:
    """SIGKILL this process when its parent ends (prctl PR_SET_PDEATHSIG): no command outlives the server."""
    import ctypes

    assert ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL) == 0, "prctl(PR_SET_PDEATHSIG) failed"


def _receive(conn: socket.socket) -> tuple[dict, list[int]]:
    data, fds, _, _ = socket.recv_fds(conn, 1 << 16, 3)
    while len(data) < 4 or len(data) < 4 + struct.unpack("!I", data[:4])[0]:
        chunk = conn.recv(1 << 16)
        assert chunk, "the script closed the connection mid-request"
        data += chunk
    return json.loads(data[4:]), fds


def _command(request: dict, fds: list[int], by_imports: dict[str, str]) -> None:
    """In the command's process: the script's streams, folder and environment, then its program; never returns."""
    code = 1
    try:
        _die_with_parent()
        os.setpgid(0, 0)  # signals to the server's process group (the pytest worker's) are not the job's
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
        for fd in fds:
            if fd > 2:
                os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update({**by_imports, **request["env"]})  # what a fresh process's imports set, unless set
        signal.signal(signal.SIGINT, signal.default_int_handler)  # as a fresh interpreter has them
        for sig in (signal.SIGTERM, signal.SIGCHLD, signal.SIGHUP, signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2):
            signal.signal(sig, signal.SIG_DFL)
        sys.stdin = open(0, closefd=False)
        sys.stdout = open(1, "w", buffering=1 if os.isatty(1) else -1, closefd=False)  # Python's own choices
        sys.stderr = open(2, "w", buffering=1, closefd=False, errors="backslashreplace")
        sys.argv = [str(BIN / request["program"]), *request["argv"]]
        sys.path[0] = str(BIN)
        import random
        import tempfile

        random.seed()  # a fresh interpreter's is seeded from the OS, not inherited
        tempfile.tempdir = None  # found from the job's TMPDIR at first use, not the server's
        import importlib

        module, function = PROGRAMS[request["program"]].split(":")
        code = getattr(importlib.import_module(module), function)()
        code = 0 if code is None else code
    except SystemExit as e:  # what the interpreter makes of it
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            print(e.code, file=sys.stderr)
            code = 1
    except BaseException as e:
        sys.excepthook(type(e), e, e.__traceback__)
        code = -signal.SIGINT if isinstance(e, KeyboardInterrupt) else 1
    finally:
        atexit._run_exitfuncs()
        for stream in (sys.stdout, sys.stderr):
            try:
                stream.flush()
            except (OSError, ValueError):  # a closed pipe: the interpreter's exit status for it
                code = code or 120
        if code == -signal.SIGINT:  # as Python does since 3.8: end by the signal
            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
        os._exit(code)


def _serve_one(conn: socket.socket, log: Path, by_imports: dict[str, str]) -> None:
    """In a fork per connection: start the command, tell the script its pid, then its exit code (negative: the
    signal that ended it); if the script goes first (killed), kill the command. Never returns."""
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    _die_with_parent()
    request, fds = _receive(conn)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _command(request, fds, by_imports)
    for fd in fds:
        os.close(fd)
    with open(log, "a") as f:  # one line a write: whole, whatever runs beside
        f.write(json.dumps({"pid": pid, "program": request["program"], "argv": request["argv"]}) + "\n")
    conn.sendall(f"{pid}\n".encode())
    done = os.pidfd_open(pid)
    while done not in select.select([conn, done], [], [])[0]:
        if not conn.recv(1):  # the script sends nothing after its request: this is its end
            os.kill(pid, signal.SIGKILL)
            break
    _, status = os.waitpid(pid, 0)
    try:
        conn.sendall(f"{os.waitstatus_to_exitcode(status)}\n".encode())
    except OSError:  # the script was killed: no one to tell
        pass
    os._exit(0)


def serve(path: str) -> None:
    from tests.forkserver import check_one_thread, preload

    before = dict(os.environ)
    preload()
    import matplotlib

    matplotlib.use("Agg")  # as fastadv's figures choose it
    import matplotlib.pyplot  # noqa: F401

    import fastadv.evaluation.protocol  # noqa: F401
    import fastadv.paper.figures  # noqa: F401
    import snakemake.cli  # noqa: F401

    check_one_thread()
    by_imports = {k: v for k, v in os.environ.items() if before.get(k) != v}  # torch: TORCHINDUCTOR_CACHE_DIR
    served = {k: v for k, v in before.items() if k.startswith(AT_START) and by_imports.get(k) != v}
    listener = socket.socket(socket.AF_UNIX)
    listener.bind(path)
    listener.listen(64)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # the per-connection forks are reaped by the kernel
    print("ready", json.dumps({"served": served, "by_imports": by_imports}), flush=True)
    while True:
        conn, _ = listener.accept()
        if os.fork() == 0:
            listener.close()
            _serve_one(conn, Path(path).parent / SERVED_LOG, by_imports)
        conn.close()


if __name__ == "__main__":
    serve(sys.argv[1])
