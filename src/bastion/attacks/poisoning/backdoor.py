"""BadNets-style backdoors (Gu et al. 2017): a trigger stamped on inputs relabelled as a target."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

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
from bastion.core.errors import UsageError
from bastion.core.model import Model, predict_labels

CORNERS = ("bottom-right", "bottom-left", "top-right", "top-left")


@dataclass(frozen=True)
class Trigger:
    """Where the trigger overwrites an input (`mask`) and with what (`values`), input-shaped."""

    mask: np.ndarray
    values: np.ndarray

    def check_fits(self, input_shape: tuple[int, ...]) -> None:
        """Raise a UsageError unless the trigger has the shape of one input."""
        if tuple(self.mask.shape) != tuple(input_shape):
            raise UsageError(
                f"the trigger has shape {tuple(self.mask.shape)} but inputs have shape "
                f"{tuple(input_shape)}",
                fix="build the trigger for the input shape (patch_trigger / feature_trigger)",
            )

    def apply(self, x: np.ndarray) -> np.ndarray:
        """A copy of the batch `x` with the trigger stamped on every row."""
        self.check_fits(tuple(x.shape[1:]))
        return np.where(self.mask, self.values, x).astype(x.dtype, copy=False)


def patch_trigger(
    input_shape: tuple[int, ...],
    size: int = 3,
    corner: str = "bottom-right",
    low: float = 0.0,
    high: float = 1.0,
) -> Trigger:
    """A `size`x`size` checkerboard of `low`/`high` in a corner of every channel of an image."""
    if len(input_shape) not in (2, 3):
        raise UsageError(
            f"a patch trigger needs image inputs (C, H, W) or (H, W), not shape {input_shape}",
            fix="use feature_trigger for tabular data",
        )
    height, width = input_shape[-2:]
    if not 1 <= size <= min(height, width):
        raise UsageError(
            f"a {size}x{size} patch does not fit {height}x{width} images",
            fix=f"choose a patch size between 1 and {min(height, width)}",
        )
    if corner not in CORNERS:
        raise UsageError(f"unknown corner {corner!r}", fix=f"choose one of: {', '.join(CORNERS)}")
    rows = slice(height - size, height) if corner.startswith("bottom") else slice(0, size)
    cols = slice(width - size, width) if corner.endswith("right") else slice(0, size)
    mask = np.zeros(input_shape, dtype=bool)
    mask[..., rows, cols] = True
    board = (np.add.outer(np.arange(height), np.arange(width)) % 2 == 0).astype(np.float32)
    values = np.broadcast_to(np.where(board, high, low), input_shape).astype(np.float32)
    return Trigger(mask, values)


def feature_trigger(input_shape: tuple[int, ...], values: Mapping[int, float]) -> Trigger:
    """A tabular trigger: the given feature indices set to the given values."""
    if len(input_shape) != 1:
        raise UsageError(
            f"a feature trigger needs flat tabular inputs, not shape {input_shape}",
            fix="use patch_trigger for images",
        )
    if not values:
        raise UsageError("a feature trigger needs at least one feature", fix="pass {index: value}")
    bad = [i for i in values if not 0 <= i < input_shape[0]]
    if bad:
        raise UsageError(
            f"trigger feature index {bad[0]} is outside the {input_shape[0]} features",
            fix=f"use feature indices in 0..{input_shape[0] - 1}",
        )
    mask = np.zeros(input_shape, dtype=bool)
    stamped = np.zeros(input_shape, dtype=np.float32)
    for index, value in values.items():
        mask[index] = True
        stamped[index] = value
    return Trigger(mask, stamped)


def badnets(
    data: Dataset, rate: float, target: int, trigger: Trigger, n_classes: int, seed: int
) -> Poisoned:
    """Stamp the trigger on a `rate` fraction of non-target rows and relabel them `target`.

    Attack success is the fraction of held-out non-target inputs that the trigger turns
    into `target`.
    """
    labels = labelled(data)
    target = check_class(target, n_classes, "target")
    trigger.check_fits(tuple(data.x.shape[1:]))
    rng = np.random.default_rng(seed)
    candidates = np.flatnonzero(labels != target)
    index = choose(candidates, poison_count(len(data), rate), rng, "rows outside the target")
    x = data.x.copy()
    x[index] = trigger.apply(data.x[index])
    y = labels.copy()
    y[index] = target

    def success(model: Model, test: Dataset) -> float:
        return backdoor_success(model, test, trigger, target)

    return Poisoned("badnets", rate, with_rows(data, x, y), index, success, {"target": target})


def backdoor_success(model: Model, test: Dataset, trigger: Trigger, target: int) -> float:
    """The fraction of held-out inputs outside `target` that the trigger turns into `target`."""
    rows = labelled(test, "test data") != target
    if not rows.any():
        return 0.0
    return float((predict_labels(model, trigger.apply(test.x[rows])) == target).mean())
