"""Graceful pre-emption: SIGTERM and SIGUSR1 (SLURM's signals before it kills a job) are noted, not obeyed at
once; the run saves its state after the step in progress and raises :class:`Preempted` (exit code 75)."""
from __future__ import annotations

import signal


class Preempted(Exception):
    """Raised after the state was saved because a termination signal arrived."""


class SignalFlag:
    """Within ``with``: the last termination signal received (``signum``), the previous handlers restored after."""

    def __init__(self):
        self.signum = None
        self._old = {}

    def __enter__(self):
        for s in (signal.SIGTERM, signal.SIGUSR1):
            try:
                self._old[s] = signal.signal(s, self._handle)
            except ValueError:  # not in the main thread: no graceful pre-emption
                pass
        return self

    def _handle(self, signum, frame):
        self.signum = signum

    def __exit__(self, *exc):
        for s, h in self._old.items():
            signal.signal(s, h)
