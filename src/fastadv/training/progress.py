"""A run's progress: where it is (epoch, iteration, step), its history, its early-stopping best, its snapshots and
the running training statistics since the last evaluation; everything a resumed run needs besides model,
optimiser and method state (``state.pt``'s ``progress``)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field

from fastadv.training import distributed

RUNNING = ("loss", "reg", "correct", "n", "delta_norm", "n_delta", "grad_norm", "n_grad")


@dataclass
class TrainProgress:
    """Everything a resumed run needs besides model, optimizer and method state."""

    epoch: int = 0        # the epoch in progress (0: statistics at initialisation only)
    it: int = 0           # iterations done in it
    global_step: int = 0  # iterations done in all
    history: list = field(default_factory=list)
    best: dict = field(default_factory=lambda: {"acc": -1.0, "epoch": 0, "iteration": 0, "state": None})
    running: dict = field(default_factory=lambda: dict.fromkeys(RUNNING, 0.0))  # since the last evaluation
    snapshots: list = field(default_factory=list)
    train_seconds: float = 0.0

    def state_dict(self) -> dict:
        d = asdict(self)
        d["running"] = {k: float(v) for k, v in self.running.items()}  # one host sync, at save time only
        return d

    def accumulate(self, res, x, y) -> None:
        """Running sums of the training statistics, kept as tensors (no host sync inside a step)."""
        r, n = self.running, len(y)
        r["loss"] = r["loss"] + res.loss.detach() * n
        r["reg"] = r["reg"] + (res.reg * n if res.reg is not None else 0.0)
        r["correct"] = r["correct"] + (res.logits.argmax(1) == y).sum()
        r["n"] += n
        if res.inputs is not None:  # ‖δ‖₂ of the training input after projection (official avg_delta_l2)
            r["delta_norm"] = r["delta_norm"] + (res.inputs.detach() - x).flatten(1).norm(dim=1).sum()
            r["n_delta"] += n
        if res.input_grad is not None:  # ‖∇ₓℓᵢ‖₂ the attack used (official grad_norm_x, per example)
            r["grad_norm"] = r["grad_norm"] + (res.input_grad.detach() * n).flatten(1).norm(dim=1).sum()
            r["n_grad"] += n

    def gather(self, group, device) -> None:
        """Data-parallel: the running sums over all ranks, held by rank 0 (the others restart from 0)."""
        if group.active:
            total = distributed.sum_over_ranks(self.running, group, device)
            self.running = total if group.main else dict.fromkeys(RUNNING, 0.0)

    def training_row(self) -> dict:
        r = self.running
        mean = (lambda k, n: float(r[k]) / r[n] if r[n] else float("nan"))
        return {"train_loss": mean("loss", "n"), "train_reg": mean("reg", "n"), "train_acc": mean("correct", "n"),
                "train_delta_norm": mean("delta_norm", "n_delta"), "train_grad_norm": mean("grad_norm", "n_grad")}
