"""The check plug-in contract."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import Protocol

from bastion.core.dataset import Dataset
from bastion.core.finding import Finding
from bastion.core.model import Model

ProgressFn = Callable[[float], None]
"""Called by a check with the fraction of its work done, from 0 to 1."""

Trainer = Callable[[Dataset, int], Model]
"""Trains a fresh model of the assessed kind on a data set with a seed (for shadow models)."""


class Budget(StrEnum):
    """How much work a check may do; each check sizes itself from it."""

    QUICK = "quick"
    STANDARD = "standard"
    THOROUGH = "thorough"

    def pick(self, quick: int, standard: int, thorough: int) -> int:
        """The number matching this budget."""
        return {Budget.QUICK: quick, Budget.STANDARD: standard, Budget.THOROUGH: thorough}[self]


@dataclass(frozen=True)
class AssessmentData:
    """What a check may use: held-out data, and the training data and trainer when known."""

    test: Dataset
    train: Dataset | None = None
    trainer: Trainer | None = None


class Check(Protocol):
    """A plug-in that measures one risk and reports it as findings."""

    name: str
    title: str

    def applies_to(self, model: Model, data: AssessmentData) -> bool: ...

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]: ...
