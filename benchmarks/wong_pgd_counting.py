"""How much Wong et al.'s PGD counting differs from the paper's protocol on one model (issue 42, item 5; not part of
the package: fastadv evaluates with the paper's rule and keeps this difference documented, README "Fidelity").

Wong et al.'s evaluation attack (locuslab/fast_adversarial, CIFAR10/utils.py ``attack_pgd``, written here from its
description, not copied): per restart, a uniform start projected to the box; at each step only the points the model
still classifies correctly move (a misclassified point stops where it is); restarts are combined by the highest final
loss (a later restart wins ties); a point counts robust when the model classifies x + δ correctly — whether or not it
classified x correctly. The paper's PGD-50-10 (fastadv.attacks.pgd, worst case): robust only when x and every
restart's final point are classified correctly.

Prints, on the first N test points at the model's training ε: clean accuracy, PGD accuracy under the paper's rule
(worst case) and the GradAlign code's (max loss), Wong et al.'s, and how many points Wong et al. count robust that are
misclassified clean.

Usage (repository root, a trained model): .venv/bin/python benchmarks/wong_pgd_counting.py --model runs/.../model_final.pt
"""
from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from fastadv.attacks.fgsm import uniform_delta
from fastadv.attacks.grad import input_grad
from fastadv.attacks.pgd import pgd_restart_outcomes, restart_rules
from fastadv.data.datasets import load_split
from fastadv.training.checkpoint import load_model, training_config
from fastadv.units import eps_absolute


def wong_pgd(model, x, y, eps: float, alpha: float, steps: int, restarts: int, gen: torch.Generator) -> torch.Tensor:
    """x + δ of Wong et al.'s attack_pgd (module docstring); ``eps``/``alpha`` absolute."""
    best_loss, best = torch.zeros(len(y)), torch.zeros_like(x)
    for _ in range(restarts):
        delta = (x + uniform_delta(x, eps, gen)).clamp(0, 1) - x
        for _ in range(steps):
            with torch.no_grad():
                active = model(x + delta).argmax(1) == y
            if not active.any():
                break
            grad, _ = input_grad(model, x, y, delta)  # the batch-mean loss's gradient, as theirs
            moved = ((x + (delta + alpha * grad.sign()).clamp(-eps, eps)).clamp(0, 1) - x)
            delta = torch.where(active[:, None, None, None], moved, delta)
        with torch.no_grad():
            loss = F.cross_entropy(model(x + delta), y, reduction="none")
        take = loss >= best_loss
        best[take], best_loss = delta[take], torch.maximum(best_loss, loss)
    return x + best


def counts(model, x, y, eps: float, alpha: float, steps: int = 50, restarts: int = 10, seed: int = 0) -> dict:
    """Each rule's robust points among ``x`` (the same random starts for the paper's two rules; Wong's its own)."""
    with torch.no_grad():
        clean = model(x).argmax(1) == y
    correct, loss = pgd_restart_outcomes(model, x, y, eps, alpha, steps, restarts, torch.Generator().manual_seed(seed))
    rules = restart_rules(clean, correct, loss)
    x_wong = wong_pgd(model, x, y, eps, alpha, steps, restarts, torch.Generator().manual_seed(seed))
    with torch.no_grad():
        wong = model(x_wong).argmax(1) == y
    return {"n": len(y), "clean": int(clean.sum()), "worst_case": int(rules["worst_case"].sum()),
            "max_loss": int(rules["max_loss"].sum()), "wong": int(wong.sum()),
            "wong_robust_but_clean_wrong": int((wong & ~clean).sum())}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", required=True)
    ap.add_argument("--n-points", type=int, default=200)
    ap.add_argument("--alpha", type=float, default=None, help="step in /255 (default ε/4, the paper's; Wong: 2)")
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg = training_config(args.model)
    eps = eps_absolute(cfg["method"]["eps"])
    alpha = eps / 4 if args.alpha is None else eps_absolute(args.alpha)
    x, y = load_split(cfg["data"]["root"], cfg["data"]["dataset"], "test", "cpu").head(args.n_points)
    c = counts(load_model(args.model), x, y, eps, alpha)
    print(f"{args.model}: eps {cfg['method']['eps']:g}/255, alpha {alpha * 255:g}/255, PGD-50-10, {c['n']} points: "
          + ", ".join(f"{k} {v}" for k, v in c.items() if k != "n"))


if __name__ == "__main__":
    main()
