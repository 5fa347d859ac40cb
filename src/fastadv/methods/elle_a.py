from __future__ import annotations

import math

import torch

from .elle import ELLE


class AdaptiveLambda:
    """ELLE-A's λ rule (Abad Rocamora et al., ICLR 2024): when the batch's local linearity error
    exceeds mean + 2·std of all earlier errors, λ jumps to λ_max; otherwise it decays by ``decay``.
    Earlier errors are kept as a running mean and variance (Welford), so the state is constant-size."""

    def __init__(self, lam_max: float, decay: float, lam: float):
        self.lam_max, self.decay, self.lam = lam_max, decay, lam
        self.n, self.mean, self.m2 = 0, 0.0, 0.0

    def update(self, error: float) -> float:
        std = math.sqrt(self.m2 / (self.n - 1)) if self.n > 1 else math.inf
        self.lam = self.lam_max if error > self.mean + 2 * std else self.lam * self.decay
        self.n += 1
        d = error - self.mean
        self.mean += d / self.n
        self.m2 += d * (error - self.mean)
        return self.lam

    def state_dict(self) -> dict:
        return {"lam": self.lam, "n": self.n, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, s: dict) -> None:
        self.lam, self.n, self.mean, self.m2 = s["lam"], s["n"], s["mean"], s["m2"]


class ELLEA(ELLE):
    """ELLE-A: ELLE with λ set by :class:`AdaptiveLambda`. params: ``lambda`` (the starting λ),
    ``lambda_max`` (paper: 4000), ``decay`` (paper: 0.99), ``alpha``."""

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self.rule = AdaptiveLambda(float(params["lambda_max"]), float(params["decay"]), self.lam)

    def weight(self, error: torch.Tensor) -> float:
        return self.rule.update(float(error))  # one host sync per step: the rule branches on it

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.rule.load_state_dict(state)
