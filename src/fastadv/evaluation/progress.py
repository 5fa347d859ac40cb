"""What an evaluation shows while it runs: a bar per batch (PGD) and per attack (AutoAttack) on a terminal,
and one line per finished stage (clean, PGD, each AutoAttack attack) on stderr, which is what the workflow's
logs keep. ``mode``: auto (bars only on a terminal; lines always), always (bars too), never (nothing)."""
from __future__ import annotations

import sys
import time

MODES = ("auto", "always", "never")


class Progress:
    def __init__(self, mode: str = "auto", stream=None):
        self.stream = stream or sys.stderr
        self.mode = mode
        self.t0 = time.perf_counter()

    def bar(self, total: int, desc: str):
        """A tqdm bar over ``total`` steps (disabled off a terminal in ``auto`` mode)."""
        from tqdm.auto import tqdm

        show = self.mode == "always" or (self.mode == "auto" and self.stream.isatty())
        return tqdm(total=total, desc=desc, file=self.stream, disable=not show, leave=False, unit="batch")

    def line(self, text: str) -> None:
        if self.mode != "never":
            print(f"[{time.perf_counter() - self.t0:7.1f} s] {text}", file=self.stream, flush=True)


SILENT = Progress("never")
