"""The catastrophic-overfitting rule and the learned test over a run's history: plain arithmetic on accuracies
(exact Fisher and binomial tails), no torch, so that tables, figures and curves recompute them from history.csv
in processes that never load a model (fastadv.training.outcome); fastadv.training.monitor applies them while a
run trains.
"""
from __future__ import annotations

import math


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


def co_flags(history: list[dict], n: int, rule) -> list[bool]:
    """:func:`flag_co` over history rows, under the ``monitor`` section ``rule`` (co_pgd_ratio, co_min_gap,
    co_alpha: a MonitorConfig or a mapping)."""
    r = rule if isinstance(rule, dict) else rule.to_dict()
    return [bool(f) for f in flag_co([h["test_pgd_acc"] for h in history], [h["test_fgsm_acc"] for h in history],
                                     n, r["co_pgd_ratio"], r["co_min_gap"], r["co_alpha"])]


def run_learned(history: list[dict], n: int, chance: float, rule) -> bool:
    """Whether a run is judged rather than counted apart as ``not_learned``: its clean accuracy rose clearly above
    chance (:func:`learned`, under the ``monitor`` section ``rule``: learned_clean_ratio, co_alpha) **or** an
    evaluation was flagged (:func:`co_flags`). A flag is itself the evidence the ``not_learned`` status exists for:
    the drop test only fires on robustness the model had (at n = 256, a drop to none from at least 7 robust points
    while FGSM accuracy sits 10 points above PGD's), so a run that collapsed that way overfitted, whatever its clean
    accuracy — the demo's FGSM at 20/255 (clean 47 of 256 at best, p = 0.03 against chance; robust points 8 → 0 in
    epoch 10 with FGSM at 61, alignment 0.15: the paper's CO) is counted as CO, not set apart (docs/sweep.md)."""
    r = rule if isinstance(rule, dict) else rule.to_dict()
    return (learned([h["test_clean_acc"] for h in history], n, chance, r["learned_clean_ratio"], r["co_alpha"])
            or any(co_flags(history, n, r)))
