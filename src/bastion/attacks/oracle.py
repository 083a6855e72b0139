"""The attacker's view of a prediction API: a query counter with a budget, label-only detection."""

from __future__ import annotations

import numpy as np

from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, check_inputs


class LabelOnlyError(UsageError):
    """A score-based attack was given a model that returns only labels."""


def check_budget(budget: int, what: str = "query budget") -> int:
    """Return `budget` when it is a positive integer, else a UsageError."""
    if not isinstance(budget, (int, np.integer)) or isinstance(budget, bool) or budget <= 0:
        raise UsageError(
            f"{what} must be a positive integer, got {budget!r}", fix=f"pass a {what} >= 1"
        )
    return int(budget)


def is_label_only(probs: np.ndarray) -> bool:
    """True when every output row is one-hot: the API reveals the class and nothing else."""
    arr = np.asarray(probs)
    if arr.size == 0:
        return False
    return bool(np.all((arr == 0.0) | (arr == 1.0)) and np.all(arr.sum(axis=1) == 1.0))


def check_features(model: Model, x: np.ndarray, what: str) -> np.ndarray:
    """`x` validated against the model's input shape, with a message naming the data set."""
    try:
        return check_inputs(model, x)
    except DataError as exc:
        raise DataError(f"{what}: {exc.message}", fix=exc.fix) from None


class Oracle:
    """Counts every row sent to the model and refuses to exceed the budget."""

    def __init__(self, model: Model, budget: int | None = None) -> None:
        self.model = model
        self.budget = None if budget is None else check_budget(budget)
        self.queries = 0
        self.label_only: bool | None = None

    @property
    def remaining(self) -> int | None:
        return None if self.budget is None else self.budget - self.queries

    def query(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities for `x` (float64), counted against the budget."""
        arr = check_features(self.model, x, "attack queries")
        if self.budget is not None and self.queries + len(arr) > self.budget:
            raise UsageError(
                f"{len(arr)} more queries would exceed the budget of {self.budget} "
                f"({self.queries} used)",
                fix="raise the query budget or ask for fewer queries",
            )
        self.queries += len(arr)
        probs = np.asarray(self.model.predict_proba(arr), dtype=np.float64)
        if len(arr):
            seen_label_only = is_label_only(probs)
            self.label_only = (
                seen_label_only if self.label_only is None else self.label_only and seen_label_only
            )
        return probs
