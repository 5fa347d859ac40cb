"""fastadv: fast adversarial training and GradAlign (Andriushchenko & Flammarion, NeurIPS 2020)."""
from .attacks import pgd_attack
from .checkpoint import load_model
from .errors import FastAdvError
from .methods import grad_align_penalty
from .monitor import gradient_alignment

__version__ = "0.1.0"
__all__ = ["pgd_attack", "load_model", "grad_align_penalty", "gradient_alignment", "FastAdvError"]
