"""`fastadv` commands started as forks of one process that imported torch, fastadv and ``torch._dynamo`` once.

A fault test starts a training, kills it, starts it again, many times; each start of ``python -m fastadv`` spent
~3 s importing (torch 1.4 s, and ``torch._dynamo`` 1.3 s, which torch's optimisers import at their first use), so
most of a test's time, and many of its "random moments", fell in imports. Here each command is ``os.fork()`` of a
server that holds those imports and never ran anything else: a process of its own (pid, signals, exit status, its
own state from the imports on), started in milliseconds, so a kill lands in the command's own work.

The server (``python -m tests.forkserver``, in the repository) reads one JSON request a line, ``{"argv": [...],
"stderr": path}``, answers the child's pid, then its exit code when it ends (negative: the signal that ended it).
"""
from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class ForkServer:
    """The test's side: ``start`` a command, ``wait`` for it with a timeout, ``signal`` it; one command at a time."""

    def __init__(self):
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        self.proc = subprocess.Popen([sys.executable, "-m", "tests.forkserver"], cwd=REPO, env=env, text=True,
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.pid, self._buffer = None, b""
        assert self._line(120) == "ready", "the fork server did not start"

    def _line(self, timeout: float | None) -> str | None:
        """The server's next line (read unbuffered: select sees the pipe, not what a reader buffered)."""
        deadline = None if timeout is None else time.monotonic() + timeout
        while b"\n" not in self._buffer:
            left = None if deadline is None else max(0.0, deadline - time.monotonic())
            if not select.select([self.proc.stdout], [], [], left)[0]:
                return None
            chunk = os.read(self.proc.stdout.fileno(), 4096)
            assert chunk, f"the fork server ended (exit {self.proc.wait()})"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode().strip()

    def start(self, argv: list[str], stderr: Path) -> int:
        assert self.pid is None, "one command at a time"
        request = {"argv": [str(a) for a in argv], "stderr": str(stderr)}
        self.proc.stdin.write(json.dumps(request) + "\n")
        self.proc.stdin.flush()
        self.pid = int(self._line(60))
        return self.pid

    def wait(self, timeout: float | None = None) -> int | None:
        """The command's exit code, or None if it still runs after ``timeout`` seconds."""
        line = self._line(timeout)
        if line is None:
            return None
        self.pid = None
        return int(line)

    def signal(self, sig: int) -> None:
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:  # it ended and was reaped already: wait() gives its exit code
            pass

    def run(self, argv: list[str], stderr: Path, timeout: float = 600) -> int:
        self.start(argv, stderr)
        code = self.wait(timeout)
        assert code is not None, f"{' '.join(map(str, argv))} still runs after {timeout} s"
        return code

    def close(self) -> None:
        if self.pid is not None:
            self.signal(signal.SIGKILL)
            self.wait()
        self.proc.stdin.close()
        self.proc.wait(timeout=60)


def _child(request: dict) -> None:
    """In the fork: the request's stderr, then the command; never returns."""
    code = 1
    try:
        null = os.open(os.devnull, os.O_RDWR)
        err = os.open(request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
        for fd, target in ((0, null), (1, null), (2, err)):  # never the server's pipes
            os.dup2(target, fd)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        from fastadv.cli import main

        code = main(request["argv"])
    except SystemExit as e:  # argparse's errors
        code = e.code if isinstance(e.code, int) else 1
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)


def preload() -> None:
    """The imports a training's process spends its first seconds on."""
    import torch  # noqa: F401
    import torch._dynamo  # noqa: F401  (imported by the first optimiser a training builds)

    import fastadv.cli  # noqa: F401
    import fastadv.training.loop  # noqa: F401


def check_one_thread() -> None:
    """A fork copies only the calling thread: a server must hold no other, or a child could inherit a held lock."""
    assert len(os.listdir("/proc/self/task")) == 1, "threads running before fork"


def serve() -> None:
    import torch

    preload()
    torch.set_num_threads(1)
    check_one_thread()
    print("ready", flush=True)
    for line in sys.stdin:
        pid = os.fork()
        if pid == 0:
            _child(json.loads(line))
        print(pid, flush=True)
        _, status = os.waitpid(pid, 0)
        print(os.waitstatus_to_exitcode(status), flush=True)


if __name__ == "__main__":
    serve()
