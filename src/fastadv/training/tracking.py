"""Optional experiment tracking with DVCLive (``runtime.dvclive: true``; the ``workflow`` extra installs it).

A run then also writes ``<out>/dvclive/``: its resolved config as params, every history row's statistics
as metrics over iterations (``dvc plots``, editors' live plots while it trains), the final metrics
(``dvc exp show``, ``dvc metrics show``) and a ``dvc.yaml`` declaring them. history.csv stays the record:
a resumed run rebuilds ``dvclive/`` from it, so the tracker never disagrees with the history. Rank 0 logs.

Everything, ``dvc.yaml`` included, stays in ``<out>/dvclive/``: DVCLive's default writes the ``dvc.yaml`` of
the working directory's DVC project, so a run started from a project's root (a test, a notebook) would
rewrite the user's tracked ``dvc.yaml`` with paths into its own folder. DVC reads such a ``dvc.yaml`` where
it lies, in any folder of the project that is not a stage's output; a run the workflow trains lies inside the
``figures`` stage's outputs (``runs/<scale>``), so there its files are named to DVC by path
(``dvc metrics show runs/<scale>/…/dvclive/metrics.json``).
"""
from __future__ import annotations

from pathlib import Path

from fastadv.errors import FastAdvError

# History columns logged as metrics (the rest are bookkeeping: epoch, iteration, seconds).
SKIP = ("epoch", "iteration", "epochs", "train_seconds", "co")


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in d.items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


class Tracker:
    """DVCLive's view of one run (a no-op when tracking is off or on ranks other than 0)."""

    def __init__(self, out: Path, enabled: bool):
        self.live = None
        if not enabled:
            return
        try:
            from dvclive import Live
        except ImportError:
            raise FastAdvError("runtime.dvclive is true but the 'dvclive' package is not installed "
                               "(pip install \".[workflow]\"); set runtime.dvclive false") from None
        live_dir = out / "dvclive"
        self.live = Live(dir=str(live_dir), dvcyaml=str(live_dir / "dvc.yaml"), save_dvc_exp=False, resume=False)

    def start(self, cfg: dict, history: list[dict]) -> None:
        """The run's params, then every row it already has (a resumed run)."""
        if self.live is None:
            return
        self.live.log_params(_flat(cfg))
        for row in history:
            self.row(row)

    def row(self, row: dict) -> None:
        if self.live is None:
            return
        self.live.step = int(row["iteration"])
        for k, v in row.items():
            if k not in SKIP and isinstance(v, (int, float)) and v == v:  # NaN (no training yet) is not logged
                self.live.log_metric(f"history/{k}", float(v), plot=True)
        self.live.log_metric("history/co", float(bool(row.get("co"))), plot=True)
        self.live.next_step()

    def end(self, summary: dict) -> None:
        if self.live is None:
            return
        self.live.summary = {**{f"final/{k}": v for k, v in summary["final"].items()},
                             "best_epoch": summary["best_epoch"], "co_epoch": summary["co_epoch"] or -1,
                             "diverged": int(summary["status"] == "diverged"),
                             "not_learned": int(summary["status"] == "not_learned")}
        self.live.end()
