"""Monitoring during training: clean / FGSM / PGD accuracy and loss, the two cosines of the paper,
gradient norms, catastrophic overfitting.

All functions evaluate the model in whatever mode the caller set (the training
loop switches to eval mode, as the GradAlign code does for its statistics).
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from fastadv.attacks import fgsm_attack, pgd_attack
from fastadv.attacks.fgsm import uniform_delta


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


def _log_comb(n: int, k: int) -> float:
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


def drop_pvalue(before: int, now: int, n: int) -> float:
    """One-sided p-value of a drop from ``before`` to ``now`` robust points of the same ``n`` monitored points
    being chance (Fisher's exact test: given the ``before + now`` robust outcomes, the probability that at
    least ``before`` of them fall in the earlier evaluation when both evaluations had the same robust rate).
    A drop from k points to none has p = C(n, k) / C(2n, k) ≈ 2⁻ᵏ: 2 → 0.25, 3 → 0.12, 9 → 0.002 at n = 256."""
    if not 0 <= now <= n or not 0 <= before <= n:
        raise ValueError(f"counts {before}, {now} outside 0..{n}")
    t = before + now
    log_total = _log_comb(2 * n, n)
    return min(1.0, sum(math.exp(_log_comb(t, x) + _log_comb(2 * n - t, n - x) - log_total)
                        for x in range(before, min(t, n) + 1)))


def above_chance_pvalue(correct: int, n: int, chance: float) -> float:
    """One-sided binomial p-value of ``correct`` of ``n`` points or more when each is right with probability
    ``chance``: P(X ≥ correct), X ~ Binomial(n, chance)."""
    if chance <= 0:
        return 0.0 if correct > 0 else 1.0
    if chance >= 1:
        return 1.0
    log_p, log_q = math.log(chance), math.log1p(-chance)
    return min(1.0, sum(math.exp(_log_comb(n, x) + x * log_p + (n - x) * log_q) for x in range(correct, n + 1)))


def _points(acc: float, n: int) -> int:
    return int(round(acc * n))


def flag_co(pgd_acc: list[float], fgsm_acc: list[float], n: int, pgd_ratio: float, min_gap: float,
            alpha: float) -> list[bool]:
    """Catastrophic overfitting flag per evaluation (Wong et al. 2020; Andriushchenko & Flammarion 2020).

    Evaluation e (accuracies on the same ``n`` monitored test points) is flagged when PGD accuracy has
    collapsed — below ``pgd_ratio`` × the best PGD accuracy of any earlier evaluation — while FGSM accuracy
    sits at least ``min_gap`` above it (FGSM no longer finds the adversarial examples PGD finds: the CO
    signature), and the drop from that best earlier count of robust points to this one is not chance at level
    ``alpha`` (:func:`drop_pvalue`): CO is the collapse of robustness the model had; a model with 2 or 3
    robust points of 256 has none to lose (at n = 256 and α = 0.01, a drop to 0 needs 7 robust points
    before). Evaluation 0 (initialisation) is never flagged.
    """
    flags = []
    for e, (p, f) in enumerate(zip(pgd_acc, fgsm_acc)):
        best_before = max(pgd_acc[:e], default=0.0)
        flags.append(e > 0 and p < pgd_ratio * best_before and f - p >= min_gap
                     and drop_pvalue(_points(best_before, n), _points(p, n), n) < alpha)
    return flags


def learned(clean_acc: list[float], n: int, chance: float, ratio: float, alpha: float) -> bool:
    """Whether a run learned: at some evaluation its clean accuracy on the ``n`` monitored points is above
    ``ratio`` × ``chance`` at level ``alpha`` (:func:`above_chance_pvalue`); chance is what a constant prediction
    of the points' most frequent class gets (1/10 on balanced CIFAR-10 points). A run that never did ends
    ``not_learned``: its PGD accuracy has nothing to collapse from, so neither its flags nor its final accuracy say
    anything about catastrophic overfitting."""
    return any(above_chance_pvalue(_points(a, n), n, min(1.0, ratio * chance)) < alpha for a in clean_acc)


def chance_accuracy(y: torch.Tensor) -> float:
    """The accuracy of always predicting the most frequent label of ``y``."""
    return float(torch.bincount(y.flatten()).max()) / len(y)


def co_flags(history: list[dict], n: int, rule) -> list[bool]:
    """:func:`flag_co` over history rows, under the ``monitor`` section ``rule`` (co_pgd_ratio, co_min_gap,
    co_alpha: a MonitorConfig or a mapping)."""
    r = rule if isinstance(rule, dict) else rule.to_dict()
    return [bool(f) for f in flag_co([h["test_pgd_acc"] for h in history], [h["test_fgsm_acc"] for h in history],
                                     n, r["co_pgd_ratio"], r["co_min_gap"], r["co_alpha"])]


def run_learned(history: list[dict], n: int, chance: float, rule) -> bool:
    """:func:`learned` over history rows, under the ``monitor`` section ``rule`` (learned_clean_ratio, co_alpha)."""
    r = rule if isinstance(rule, dict) else rule.to_dict()
    return learned([h["test_clean_acc"] for h in history], n, chance, r["learned_clean_ratio"], r["co_alpha"])


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
        """Sets every row's ``co`` from the whole history (:func:`flag_co`)."""
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
