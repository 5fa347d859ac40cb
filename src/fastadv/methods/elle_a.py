from __future__ import annotations

from fastadv.lazy import lazy
from fastadv.methods.elle import ELLE
from fastadv.methods.registry import MethodSpec, Param

# imported at the first training step, so that reading SPEC needs no torch (fastadv.lazy)
torch = lazy("torch")

SPEC = MethodSpec(
    "elle_a",
    summary="ELLE-A: λ jumps to λ_max when the error exceeds mean + 2·std of past errors, else ×decay",
    impl="fastadv.methods.elle_a:ELLEA",
    params={
        "lambda": Param("float", 0.0, "starting λ", optional=True, min=0),
        "lambda_max": Param("float", 4000.0, "λ after a spike (paper)", min=0),
        "decay": Param("float", 0.99, "λ ← decay·λ without a spike (paper)", min=0, max=1),
        "alpha": Param("float", 1.0, "as elle", min=0, min_exclusive=True),
        "clip": Param("bool", True, "as elle"),
    },
    passes=5,  # measured 2.5× FGSM at the quick scale (as ELLE)
    styles={"elle_a": ("ELLE-A", "#dbdb8d")},
)


class AdaptiveLambda:
    """ELLE-A's λ rule (Abad Rocamora et al., ICLR 2024): when the batch's local linearity error
    exceeds mean + 2·std of all earlier errors (at least 3 of them; population std), λ jumps to
    λ_max; otherwise it decays by ``decay`` — as the official code (LIONS-EPFL/ELLE,
    core/utils/train.py, ``lambda_schedule='onoff'``). Earlier errors are kept as a running mean
    and variance (Welford), so the state is constant-size; it lives in float64 tensors on the
    errors' device, so the rule costs no host synchronisation inside a training step."""

    def __init__(self, lam_max: float, decay: float, lam: float):
        self.lam_max, self.decay = lam_max, decay
        self.lam, self.n, self.mean, self.m2 = (torch.tensor(v, dtype=torch.float64) for v in (lam, 0.0, 0.0, 0.0))

    def update(self, error) -> torch.Tensor:
        """Account for ``error`` (a 0-d tensor or a number); returns the new λ."""
        e = torch.as_tensor(error).detach()
        if e.device != self.lam.device:
            self._to(e.device)
        e = e.to(torch.float64)
        spike = (self.n > 2) & (e > self.mean + 2 * (self.m2 / self.n.clamp_min(1)).sqrt())
        self.lam = torch.where(spike, torch.full_like(self.lam, self.lam_max), self.lam * self.decay)
        self.n = self.n + 1
        d = e - self.mean
        self.mean = self.mean + d / self.n
        self.m2 = self.m2 + d * (e - self.mean)
        return self.lam

    def _to(self, device) -> None:
        self.lam, self.n, self.mean, self.m2 = (t.to(device) for t in (self.lam, self.n, self.mean, self.m2))

    def state_dict(self) -> dict:
        return {"lam": self.lam, "n": self.n, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, s: dict) -> None:
        self.lam, self.n, self.mean, self.m2 = (torch.as_tensor(s[k], dtype=torch.float64)
                                                for k in ("lam", "n", "mean", "m2"))


class ELLEA(ELLE):
    """ELLE-A: ELLE with λ set by :class:`AdaptiveLambda`. params: ``lambda`` (the starting λ; 0 as
    the official code),
    ``lambda_max`` (paper: 4000), ``decay`` (paper: 0.99), ``alpha``."""

    def __init__(self, eps, params, dataset):
        super().__init__(eps, params, dataset)
        self.rule = AdaptiveLambda(float(params["lambda_max"]), float(params["decay"]), self.lam)

    def weight(self, error: torch.Tensor) -> float:
        """This step's λ; the rule then sets the next step's from this error (the official code
        updates λ after the step, so a spike is penalised from the following batch on)."""
        lam = self.rule.lam
        self.rule.update(error)
        return lam.to(error.device, error.dtype)

    def state_dict(self) -> dict:
        return self.rule.state_dict()

    def load_state_dict(self, state: dict) -> None:
        if state:
            self.rule.load_state_dict(state)
