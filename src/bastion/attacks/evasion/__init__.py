"""Evasion attacks: white-box (FGSM, PGD, APGD, C&W), black-box (Square, HopSkipJump),
constrained tabular evasion, and the worst-case robustness evaluation over a suite."""

from bastion.attacks.evasion._common import AttackResult
from bastion.attacks.evasion.apgd import apgd
from bastion.attacks.evasion.fgsm import fgsm
from bastion.attacks.evasion.pgd import pgd

__all__ = ["AttackResult", "apgd", "fgsm", "pgd"]
