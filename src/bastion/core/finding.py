"""Findings: the only thing a report is built from."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Severity(StrEnum):
    """Severity scale, ordered from harmless to critical."""

    INFO = "info"
    LOW = "low"
    MEDIUM = "medium"
    HIGH = "high"
    CRITICAL = "critical"

    @property
    def rank(self) -> int:
        return _ORDER.index(self)

    def __ge__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank >= other.rank

    def __gt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank > other.rank

    def __le__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank <= other.rank

    def __lt__(self, other: object) -> bool:
        if not isinstance(other, Severity):
            return NotImplemented
        return self.rank < other.rank


_ORDER = [Severity.INFO, Severity.LOW, Severity.MEDIUM, Severity.HIGH, Severity.CRITICAL]


def severity_from_thresholds(
    value: float, thresholds: list[tuple[float, Severity]], *, higher_is_worse: bool
) -> Severity:
    """Map a metric to a severity: the worst level whose threshold the value crosses."""
    worst = Severity.INFO
    for limit, level in thresholds:
        crossed = value >= limit if higher_is_worse else value <= limit
        if crossed and level > worst:
            worst = level
    return worst


@dataclass(frozen=True)
class Plot:
    """A figure attached to a finding, rendered as standalone SVG text."""

    title: str
    svg: str


@dataclass(frozen=True)
class Finding:
    """One result of one check, in the shape every report shares."""

    id: str
    check: str
    title: str
    severity: Severity
    metric: str
    value: float
    threshold: float | None
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendation: str = ""
    plots: tuple[Plot, ...] = ()
    headline: bool = False
