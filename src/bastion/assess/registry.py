"""Discovery of checks: each module listed here exposes a `CHECK` object."""

from __future__ import annotations

import importlib

from bastion.assess.check import Check
from bastion.core.errors import UsageError

CHECK_MODULES = [
    "bastion.assess.checks.baseline",
    "bastion.assess.checks.evasion",
    "bastion.assess.checks.poisoning",
    "bastion.assess.checks.extraction",
    "bastion.assess.checks.extraction_defence",
    "bastion.assess.checks.membership",
    "bastion.assess.checks.inversion",
]


def all_checks() -> list[Check]:
    """Every registered check, in report order."""
    return [importlib.import_module(name).CHECK for name in CHECK_MODULES]


def select(names: list[str] | None) -> list[Check]:
    """The checks named (all when `names` is empty or None); unknown names are an error."""
    checks = all_checks()
    if not names:
        return checks
    by_name = {c.name: c for c in checks}
    unknown = [n for n in names if n not in by_name]
    if unknown:
        raise UsageError(
            f"unknown check(s): {', '.join(unknown)}", fix=f"choose from: {', '.join(by_name)}"
        )
    return [by_name[n] for n in names]
