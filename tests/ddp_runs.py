"""Several data-parallel trainings in one torchrun launch: ``torchrun --nproc_per_node=2 -m tests.ddp_runs RUNS.json``
runs each entry of RUNS.json (``{"port": a free port, "args": a `fastadv train` argument list}``) in turn, in every
rank, through the CLI's own entry point. Each run joins a process group of its own and leaves it
(fastadv.training.distributed), as a run of its own launch does: its own TCP store, on its port (torchrun's store,
kept by the agent across runs, held the previous group's addresses: a second group on it timed out connecting).
Only the interpreter and torch's imports are shared, which were 8 of the ~11 CPU seconds of each two-rank
comparison test started on its own. Between two runs every rank waits for the others to finish (files beside
RUNS.json), so that each run starts with all its ranks, as a launch does: rank 0 alone writes a run's files at its
end, and a rank already in the next run's collectives could time out waiting. Exits with the first failing run's
code."""
import json
import os
import sys
import time
from pathlib import Path

from fastadv.cli import main as fastadv


def wait_for_every_rank(folder: Path, run: int, timeout_s: float = 600) -> None:
    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    (folder / f"run{run}.rank{rank}.done").touch()
    deadline = time.monotonic() + timeout_s
    while not all((folder / f"run{run}.rank{r}.done").exists() for r in range(world)):
        if time.monotonic() > deadline:
            raise SystemExit(f"tests.ddp_runs: run {run}: not every rank finished within {timeout_s} s")
        time.sleep(0.02)


def main(path: str) -> int:
    os.environ.pop("TORCHELASTIC_USE_AGENT_STORE", None)  # rank 0 serves each run's store
    for run, entry in enumerate(json.loads(Path(path).read_text())):
        os.environ["MASTER_PORT"] = str(entry["port"])
        args = entry["args"]
        code = fastadv(args)
        if code != 0:
            print(f"tests.ddp_runs: {' '.join(args)} exited {code}", file=sys.stderr)
            return code
        wait_for_every_rank(Path(path).parent, run)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
