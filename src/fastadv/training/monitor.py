"""Monitoring during training: clean / FGSM / PGD accuracy and loss, the two cosines of the paper,
gradient norms, catastrophic overfitting (the rule itself: fastadv.training.co_rule).

All functions evaluate the model in whatever mode the caller set (the training
loop switches to eval mode, as the GradAlign code does for its statistics).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from fastadv.attacks import fgsm_attack, pgd_attack
from fastadv.attacks.fgsm import uniform_delta
from fastadv.training.co_rule import co_flags, run_learned


def _chunks(n: int, batch_size: int):
    for i in range(0, n, batch_size):
        yield slice(i, min(i + batch_size, n))


def accuracy(model, x, y, batch_size: int = 512) -> float:
    with torch.no_grad():
        correct = sum((model(x[s]).argmax(1) == y[s]).sum() for s in _chunks(len(y), batch_size))
    return float(correct) / len(y)


def fgsm_accuracy(model, x, y, eps: float, batch_size: int = 512) -> float:
    """Accuracy under FGSM from zero with step ε (the paper's monitoring FGSM)."""
    correct = 0
    for s in _chunks(len(y), batch_size):
        x_adv = fgsm_attack(model, x[s], y[s], eps)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y[s]).sum()
    return float(correct) / len(y)


def pgd_accuracy(model, x, y, eps: float, alpha: float, steps: int, restarts: int = 1,
                 gen: torch.Generator | None = None, batch_size: int = 512) -> float:
    correct = 0
    for s in _chunks(len(y), batch_size):
        x_adv = pgd_attack(model, x[s], y[s], eps, alpha, steps, restarts, random_init=True, gen=gen)
        with torch.no_grad():
            correct += (model(x_adv).argmax(1) == y[s]).sum()
    return float(correct) / len(y)


def clamped_input_grad(model, x, y, delta: torch.Tensor) -> torch.Tensor:
    """∇_δ Σᵢ ℓ(model(clip₀₁(x + δ))ᵢ, yᵢ): per-example loss gradients with the box clip inside the
    graph (utils.get_grad_np of the GradAlign code clips with ``clamp(X + delta, 0, 1)`` before the
    forward pass), so a coordinate not strictly inside [0,1] gets zero gradient — also a pixel at
    exactly 0 or 1, as under the official code's torch 1.4."""
    delta = delta.detach().clone().requires_grad_(True)
    loss = F.cross_entropy(model((x + delta).clamp(0, 1)), y, reduction="sum")
    (grad,) = torch.autograd.grad(loss, delta)
    return grad.detach()


def cosines(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-example cosine of two batches of vectors; 1 where either is 0 (the GradAlign code's
    avg_cos_np replaces 0/0 by 1)."""
    a, b = a.flatten(1).double(), b.flatten(1).double()
    na, nb = a.norm(dim=1), b.norm(dim=1)
    cos = (a * b).sum(1) / (na * nb)
    return torch.where((na > 0) & (nb > 0), cos, torch.ones_like(cos))


def gradient_alignment(model, x, y, eps: float, eta: torch.Tensor | None = None,
                       gen: torch.Generator | None = None, batch_size: int = 512) -> float:
    """Mean over examples of cos(∇ₓℓ(x), ∇ₓℓ(clip₀₁(x+η))), η ~ U[-ε,ε]^d (``eps`` absolute).

    The monitoring metric of Andriushchenko & Flammarion (2020, Fig. 3/Fig. A;
    utils.get_grad_np + avg_cos_np): both gradients are taken through the clip of the input to
    [0,1] (zero where x+η leaves the box), and an example with a zero gradient counts as
    cos = 1 (the official 0/0 → 1 convention).
    """
    eta = uniform_delta(x, eps, gen) if eta is None else eta
    total = 0.0
    for s in _chunks(len(y), batch_size):
        g1 = clamped_input_grad(model, x[s], y[s], torch.zeros_like(x[s]))
        g2 = clamped_input_grad(model, x[s], y[s], eta[s])
        total += float(cosines(g1, g2).sum())
    return total / len(y)


def statistics(model, x, y, eps: float, pgd_steps: int, gen: torch.Generator | None = None,
               batch_size: int = 512) -> dict:
    """The GradAlign code's statistics on fixed points (train.py, every ``eval_iter_freq`` iterations),
    ``eps`` absolute: accuracy and mean cross-entropy on clean, FGSM (zero start, step ε) and PGD
    (``pgd_steps`` steps, α = ε/4, uniform start, one restart) inputs; cos(δ_FGSM, δ_PGD); gradient
    alignment cos(∇ₓℓ(x), ∇ₓℓ(x+η)); and the mean ℓ2 norms of ∇ₓℓ(x) (per example) and of δ_FGSM,
    δ_PGD after projection. Draws from ``gen``: the PGD start, then η (per chunk of ``batch_size``)."""
    keys = ("clean_acc", "clean_loss", "fgsm_acc", "fgsm_loss", "pgd_acc", "pgd_loss", "cos_fgsm_pgd",
            "grad_alignment", "grad_norm", "fgsm_delta_norm", "pgd_delta_norm")
    total = dict.fromkeys(keys, 0.0)
    for s in _chunks(len(y), batch_size):
        xs, ys = x[s], y[s]
        x_fgsm = fgsm_attack(model, xs, ys, eps)
        x_pgd = pgd_attack(model, xs, ys, eps, eps / 4, pgd_steps, 1, random_init=True, skip_broken=False, gen=gen)
        eta = uniform_delta(xs, eps, gen)
        grad_x = clamped_input_grad(model, xs, ys, torch.zeros_like(xs))
        grad_eta = clamped_input_grad(model, xs, ys, eta)
        with torch.no_grad():
            for name, inputs in (("clean", xs), ("fgsm", x_fgsm), ("pgd", x_pgd)):
                logits = model(inputs)
                total[f"{name}_acc"] += float((logits.argmax(1) == ys).sum())
                total[f"{name}_loss"] += float(F.cross_entropy(logits, ys, reduction="sum"))
        d_fgsm, d_pgd = x_fgsm - xs, x_pgd - xs
        total["cos_fgsm_pgd"] += float(cosines(d_fgsm, d_pgd).sum())
        total["grad_alignment"] += float(cosines(grad_x, grad_eta).sum())
        total["grad_norm"] += float(grad_x.flatten(1).norm(dim=1).sum())
        total["fgsm_delta_norm"] += float(d_fgsm.flatten(1).norm(dim=1).sum())
        total["pgd_delta_norm"] += float(d_pgd.flatten(1).norm(dim=1).sum())
    return {k: v / len(y) for k, v in total.items()}


def chance_accuracy(y: torch.Tensor) -> float:
    """The accuracy of always predicting the most frequent label of ``y``."""
    return float(torch.bincount(y.flatten()).max()) / len(y)


class Monitor:
    """The statistics of one evaluation of a run (the official train.py's, every ``monitor.every_iterations``
    iterations, eval mode): on the first ``test_points`` test images, and PGD-10 accuracy on the first
    ``train_points`` training images (the early-stopping criterion); the CO flags over the history."""

    def __init__(self, cfg: "MonitorConfig", test_points: tuple, train_points: tuple):  # noqa: F821 (config.run_config)
        self.cfg, self.test_points, self.train_points = cfg, test_points, train_points
        self.chance = chance_accuracy(test_points[1])

    @property
    def n(self) -> int:
        """The number of monitored test points (``test_points``, or fewer where the test set is smaller)."""
        return len(self.test_points[1])

    def evaluate(self, model, eps: float, gen: torch.Generator) -> dict:
        """The statistics' columns of a history row (``model`` is left in eval mode; ``eps`` absolute)."""
        m = self.cfg
        model.eval()
        stats = statistics(model, *self.test_points, eps, m.pgd_steps, gen, m.batch_size)
        row = {f"test_{k}" if k != "grad_alignment" else k: v for k, v in stats.items()}
        row["train_pgd_acc"] = pgd_accuracy(model, *self.train_points, eps, eps / 4, m.pgd_steps, gen=gen,
                                            batch_size=m.batch_size)
        row.update(getattr(model, "diagnostics", dict)())
        return row

    def flag(self, history: list[dict]) -> None:
        """Sets every row's ``co`` from the whole history (fastadv.training.co_rule.flag_co)."""
        for r, f in zip(history, co_flags(history, self.n, self.cfg)):
            r["co"] = f

    def learned(self, history: list[dict]) -> bool:
        return run_learned(history, self.n, self.chance, self.cfg)

    def criterion(self, row: dict) -> float:
        """The early-stopping criterion of ``monitor.best_by``: ``pgd``, PGD accuracy on the fixed training points
        (the GradAlign code's); ``clean``, clean accuracy on the monitored test points (Wong et al.'s ImageNet
        code keeps the model of best clean validation accuracy, main_fast.py ``model_best.pth.tar``)."""
        return row["train_pgd_acc"] if self.cfg.best_by == "pgd" else row["test_clean_acc"]

    def improves(self, row: dict, best: dict) -> bool:
        """A row becomes the best model when its criterion beats every earlier row's (strictly: on a tie the
        earlier model stays)."""
        return self.criterion(row) > best["acc"]

    @staticmethod
    def describe(row: dict) -> str:
        """The row as the one line the run prints."""
        return (f"epoch {row['epoch']:3d} it {row['iteration']:6d} lr {row['lr']:.4f} loss {row['train_loss']:.4f} "
                f"acc {row['train_acc']:.3f} | test clean {row['test_clean_acc']:.3f} fgsm {row['test_fgsm_acc']:.3f} "
                f"pgd {row['test_pgd_acc']:.3f} align {row['grad_alignment']:.3f}{' CO' if row['co'] else ''} | "
                f"{row['train_seconds']:.1f}s")
