"""Small helpers shared by the scanner tests."""

from __future__ import annotations

from bastion.integrity.scan import ScanReport


def rules(report: ScanReport) -> set[str]:
    """Every rule id that fired anywhere in the report."""
    return {f.rule for file in report.files for f in file.findings}
