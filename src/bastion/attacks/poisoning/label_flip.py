"""Label flipping: random (degrade the model) and targeted (source class read as target)."""

from __future__ import annotations

import numpy as np

from bastion.attacks.poisoning.base import (
    Poisoned,
    check_class,
    choose,
    labelled,
    poison_count,
    with_rows,
)
from bastion.core.dataset import Dataset
from bastion.core.model import Model, predict_labels


def flip_labels_random(data: Dataset, rate: float, n_classes: int, seed: int) -> Poisoned:
    """Give a `rate` fraction of rows a different label drawn uniformly.

    Attack success is the test error rate: the attacker's goal is a worse model.
    """
    labels = labelled(data)
    rng = np.random.default_rng(seed)
    index = choose(np.arange(len(data)), poison_count(len(data), rate), rng, "rows")
    y = labels.copy()
    shift = rng.integers(1, n_classes, size=len(index))
    y[index] = (labels[index] + shift) % n_classes

    def success(model: Model, test: Dataset) -> float:
        return float((predict_labels(model, test.x) != labelled(test, "test data")).mean())

    return Poisoned("label_flip_random", rate, with_rows(data, data.x, y), index, success)


def flip_labels_targeted(
    data: Dataset, rate: float, source: int, target: int, n_classes: int, seed: int
) -> Poisoned:
    """Relabel a `rate` fraction of the whole set, taken from class `source`, as `target`.

    Attack success is the fraction of held-out `source` examples predicted as `target`.
    """
    labels = labelled(data)
    source = check_class(source, n_classes, "source")
    target = check_class(target, n_classes, "target")
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(labels == source)
    index = choose(candidates, poison_count(len(data), rate), rng, f"rows of class {source}")
    y = labels.copy()
    y[index] = target

    def success(model: Model, test: Dataset) -> float:
        rows = labelled(test, "test data") == source
        if not rows.any():
            return 0.0
        return float((predict_labels(model, test.x[rows]) == target).mean())

    return Poisoned(
        "label_flip_targeted",
        rate,
        with_rows(data, data.x, y),
        index,
        success,
        {"source": source, "target": target},
    )
