"""Reports: `report.json` (valid against the published schema) and a self-contained `index.html`."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.finding import Finding, Severity

SCHEMA_VERSION = "1.0"


@dataclass(frozen=True)
class CheckResult:
    """One check's outcome: its findings, or why it was skipped or failed."""

    name: str
    title: str
    status: str  # "ok" | "skipped" | "error"
    findings: list[Finding] = field(default_factory=list)
    note: str = ""
    seconds: float = 0.0

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)

    @property
    def headline(self) -> Finding | None:
        flagged = [f for f in self.findings if f.headline]
        if flagged:
            return flagged[0]
        return max(self.findings, key=lambda f: f.severity.rank, default=None)


@dataclass(frozen=True)
class Report:
    """Everything an assessment produced."""

    model: dict[str, Any]
    budget: str
    seed: int
    created: str
    duration_seconds: float
    results: list[CheckResult]
    bastion_version: str

    @property
    def findings(self) -> list[Finding]:
        return [f for r in self.results for f in r.findings]

    @property
    def worst(self) -> Severity | None:
        return max((f.severity for f in self.findings), default=None)


def schema() -> dict[str, Any]:
    """The JSON Schema every `report.json` validates against."""
    text = (
        resources.files("bastion.assess").joinpath("report.schema.json").read_text(encoding="utf-8")
    )
    return dict(json.loads(text))


def _plain(value: Any) -> Any:
    """Evidence as JSON: NumPy scalars and arrays become numbers and lists."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, np.ndarray):
        return _plain(value.tolist())
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _finite(value: float | None) -> float | None:
    return None if value is None or not np.isfinite(value) else float(value)


def _plot_file(finding: Finding, index: int) -> str:
    return f"plots/{finding.id}-{index}.svg"


def to_json(report: Report) -> dict[str, Any]:
    """The report as the JSON document the schema describes."""

    def finding(f: Finding) -> dict[str, Any]:
        return {
            "id": f.id,
            "check": f.check,
            "title": f.title,
            "severity": f.severity.value,
            "metric": f.metric,
            "value": _finite(f.value),
            "threshold": _finite(f.threshold),
            "evidence": _plain(f.evidence),
            "recommendation": f.recommendation,
            "plots": [{"title": p.title, "file": _plot_file(f, i)} for i, p in enumerate(f.plots)],
        }

    def scorecard(r: CheckResult) -> dict[str, Any]:
        head = r.headline
        return {
            "check": r.name,
            "title": r.title,
            "status": r.status,
            "severity": r.worst.value if r.worst else None,
            "metric": head.metric if head else None,
            "value": _finite(head.value) if head else None,
            "findings": len(r.findings),
            "note": r.note,
            "seconds": round(r.seconds, 3),
        }

    return {
        "schema_version": SCHEMA_VERSION,
        "bastion_version": report.bastion_version,
        "created": report.created,
        "model": _plain(report.model),
        "budget": report.budget,
        "seed": report.seed,
        "duration_seconds": round(report.duration_seconds, 3),
        "worst_severity": report.worst.value if report.worst else None,
        "scorecard": [scorecard(r) for r in report.results],
        "findings": [finding(f) for f in report.findings],
    }


def to_html(report: Report) -> str:
    """The report as one self-contained HTML page: inline CSS and SVG, no scripts or URLs."""
    from jinja2 import Environment, PackageLoader, select_autoescape

    env = Environment(
        loader=PackageLoader("bastion.assess", "templates"), autoescape=select_autoescape()
    )
    env.filters["plain"] = _plain
    env.filters["fmt"] = lambda v: (
        "n/a" if v is None else (f"{v:.4g}" if isinstance(v, float) else str(v))
    )
    return env.get_template("report.html.j2").render(report=report, doc=to_json(report))


def write(report: Report, directory: Path) -> None:
    """Write report.json, index.html and plots/ into `directory` (which must be empty)."""
    plots = directory / "plots"
    plots.mkdir(parents=True, exist_ok=True)
    for f in report.findings:
        for i, p in enumerate(f.plots):
            (directory / _plot_file(f, i)).write_text(p.svg, encoding="utf-8")
    (directory / "report.json").write_text(json.dumps(to_json(report), indent=2), encoding="utf-8")
    (directory / "index.html").write_text(to_html(report), encoding="utf-8")
