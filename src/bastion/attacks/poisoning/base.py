"""What every poisoning attack shares: the poisoned set, rate checks, and evaluation."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, predict_labels

Trainer = Callable[[Dataset, int], Model]
SuccessFn = Callable[[Model, Dataset], float]


@dataclass(frozen=True)
class Poisoned:
    """A poisoned training set, which rows were poisoned, and how to score the attack.

    `success(model, test)` is the attacker's goal measured on held-out data, in [0, 1].
    """

    kind: str
    rate: float
    dataset: Dataset
    poison_index: np.ndarray
    success: SuccessFn = field(repr=False)
    params: dict[str, object] = field(default_factory=dict)

    @property
    def is_poison(self) -> np.ndarray:
        """A boolean mask over the rows of `dataset`: True where the row was poisoned."""
        mask = np.zeros(len(self.dataset), dtype=bool)
        mask[self.poison_index] = True
        return mask


@dataclass(frozen=True)
class PoisoningResult:
    """Clean accuracy and attack success of a model trained on a poisoned set."""

    kind: str
    rate: float
    n_poison: int
    clean_accuracy: float
    attack_success: float
    model: Model = field(repr=False)


def check_rate(rate: float) -> float:
    """A poison rate in [0, 1), or a UsageError naming the problem."""
    if not (isinstance(rate, int | float) and math.isfinite(rate) and 0.0 <= rate < 1.0):
        raise UsageError(
            f"poison rate {rate!r} is outside [0, 1)",
            fix="pass the fraction of training rows to poison, e.g. 0.05 for 5%",
        )
    return float(rate)


def poison_count(n_rows: int, rate: float) -> int:
    """How many rows a rate poisons (rounded, so 5% of 1437 rows is 72)."""
    return round(check_rate(rate) * n_rows)


def labelled(data: Dataset, what: str = "training data") -> np.ndarray:
    """The labels of `data`, or a DataError saying poisoning needs them."""
    if data.y is None:
        raise DataError(f"the {what} has no labels", fix="provide labels (y) with the data")
    return data.labels


def check_class(label: int, n_classes: int, name: str) -> int:
    """A class index in range, or a UsageError."""
    if not 0 <= int(label) < n_classes:
        raise UsageError(
            f"{name} class {label} is not one of the {n_classes} classes",
            fix=f"choose a class index in 0..{n_classes - 1}",
        )
    return int(label)


def choose(candidates: np.ndarray, n: int, rng: np.random.Generator, what: str) -> np.ndarray:
    """`n` distinct rows from `candidates`, sorted, or a UsageError when there are too few."""
    if n > len(candidates):
        raise UsageError(
            f"the rate asks for {n} poisoned rows but only {len(candidates)} {what} exist",
            fix="lower the poison rate",
        )
    return np.sort(rng.choice(candidates, size=n, replace=False))


def with_rows(data: Dataset, x: np.ndarray, y: np.ndarray) -> Dataset:
    """`data` with new inputs and labels, keeping its metadata."""
    return Dataset(x, y, data.feature_names, data.class_names, data.bounds)


def accuracy(model: Model, test: Dataset) -> float:
    """Top-1 accuracy of `model` on labelled `test`."""
    labels = labelled(test, "test data")
    return float((predict_labels(model, test.x) == labels).mean()) if len(labels) else 0.0


def evaluate(poisoned: Poisoned, trainer: Trainer, test: Dataset, seed: int) -> PoisoningResult:
    """Train with `trainer` on the poisoned set; report clean accuracy and attack success."""
    model = trainer(poisoned.dataset, seed)
    return PoisoningResult(
        kind=poisoned.kind,
        rate=poisoned.rate,
        n_poison=len(poisoned.poison_index),
        clean_accuracy=accuracy(model, test),
        attack_success=poisoned.success(model, test),
        model=model,
    )
