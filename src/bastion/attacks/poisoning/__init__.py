"""Poisoning attacks: label flipping, BadNets backdoors and a clean-label feature collision.

Each attack returns a `Poisoned` training set; `evaluate` trains a model on it with the
caller's trainer and reports clean accuracy and attack success on held-out data.
"""

from bastion.attacks.poisoning.backdoor import Trigger, badnets, feature_trigger, patch_trigger
from bastion.attacks.poisoning.base import Poisoned, PoisoningResult, evaluate, poison_count
from bastion.attacks.poisoning.clean_label import feature_collision
from bastion.attacks.poisoning.label_flip import flip_labels_random, flip_labels_targeted

__all__ = [
    "Poisoned",
    "PoisoningResult",
    "Trigger",
    "badnets",
    "evaluate",
    "feature_collision",
    "feature_trigger",
    "flip_labels_random",
    "flip_labels_targeted",
    "patch_trigger",
    "poison_count",
]
