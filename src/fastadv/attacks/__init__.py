"""Attacks in the L∞ threat model. ε and step sizes here are absolute, in [0,1] pixel units.

None of them changes the model's train/eval mode: the caller chooses (training-time
attacks run in train mode as in the GradAlign code, evaluation in eval mode).
"""
from fastadv.attacks.fgsm import FGSM, fgsm_attack
from fastadv.attacks.grad import input_grad
from fastadv.attacks.pgd import PGD, pgd_attack, pgd_perturbation

__all__ = ["FGSM", "PGD", "fgsm_attack", "input_grad", "pgd_attack", "pgd_perturbation"]
