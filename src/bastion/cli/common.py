"""Pieces shared by the command modules: consoles and severity parsing."""

from __future__ import annotations

from rich.console import Console

from bastion.core.errors import UsageError
from bastion.core.finding import Severity

out = Console()
err = Console(stderr=True)

SEVERITY_COLOURS = {
    Severity.INFO: "blue",
    Severity.LOW: "green",
    Severity.MEDIUM: "yellow",
    Severity.HIGH: "dark_orange",
    Severity.CRITICAL: "red",
}


def parse_severity(value: str | None) -> Severity | None:
    """A Severity from a CLI option value (None stays None)."""
    if value is None:
        return None
    try:
        return Severity(value.lower())
    except ValueError:
        choices = ", ".join(s.value for s in Severity)
        raise UsageError(f"unknown severity {value!r}", fix=f"choose one of: {choices}") from None
