"""Scan results: findings, per-file verdicts and the report, plus JSON and SARIF renderings.

Plain classes and a `collections.namedtuple` rather than dataclasses or `typing`: importing
those (and the `inspect` dataclasses pulls in) would be most of `bastion scan`'s start-up.
"""

from __future__ import annotations

from collections import namedtuple

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any, Literal, NamedTuple

    Verdict = Literal["safe", "suspicious", "malicious", "error"]
    Level = Literal["info", "low", "medium", "high", "critical"]
    # What a finding means for the file's verdict; "error": the file was not fully scanned.
    Effect = Literal["none", "suspicious", "malicious", "error"]

    class _Finding(NamedTuple):
        rule: str
        severity: Level
        message: str
        location: str = ""
        global_: str | None = None
        effect: Effect = "suspicious"

else:
    Verdict = Level = Effect = str  # the Literal types above, for type checkers only
    _Finding = namedtuple(
        "_Finding",
        ["rule", "severity", "message", "location", "global_", "effect"],
        defaults=["", None, "suspicious"],
    )

_VERDICT_RANK: dict[str, int] = {"safe": 0, "suspicious": 1, "error": 2, "malicious": 3}


class ScanFinding(_Finding):
    """One observation about a file: which rule fired, where, and about which global (if any).

    Fields: rule, severity, message, location="", global_=None, effect="suspicious".
    """

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "severity": self.severity,
            "message": self.message,
            "location": self.location,
            "global": self.global_,
        }


class FileResult:
    """The verdict for one file (or archive member, named `archive!member`)."""

    def __init__(
        self,
        path: str,
        format: str,
        findings: list[ScanFinding] | None = None,
        imports: dict[str, int] | None = None,
    ) -> None:
        self.path = path
        self.format = format
        self.findings: list[ScanFinding] = [] if findings is None else findings
        # every global the file's pickles import, with the number of call sites that invoke it
        self.imports: dict[str, int] = {} if imports is None else imports

    def __repr__(self) -> str:
        return f"FileResult({self.path!r}, {self.format!r}, verdict={self.verdict!r})"

    @property
    def verdict(self) -> Verdict:
        worst: Verdict = "safe"
        for finding in self.findings:
            if finding.effect != "none" and _VERDICT_RANK[finding.effect] > _VERDICT_RANK[worst]:
                worst = finding.effect
        return worst

    def to_dict(self) -> dict[str, Any]:
        return {
            "path": self.path,
            "format": self.format,
            "verdict": self.verdict,
            "findings": [f.to_dict() for f in self.findings],
            "imports": dict(sorted(self.imports.items())),
        }


class ScanReport:
    """Every scanned file with its verdict; `safe` only when every file is safe."""

    def __init__(self, files: list[FileResult] | None = None, policy: str = "default") -> None:
        self.files: list[FileResult] = [] if files is None else files
        self.policy = policy

    def __repr__(self) -> str:
        return f"ScanReport({len(self.files)} files, verdict={self.verdict!r})"

    @property
    def safe(self) -> bool:
        return bool(self.files) and all(f.verdict == "safe" for f in self.files)

    @property
    def verdict(self) -> Verdict:
        worst: Verdict = "safe"
        for result in self.files:
            if _VERDICT_RANK[result.verdict] > _VERDICT_RANK[worst]:
                worst = result.verdict
        return worst

    @property
    def exit_code(self) -> int:
        """0 all safe; 2 any file could not be scanned; otherwise 1 if anything was found."""
        verdicts = {f.verdict for f in self.files}
        if "error" in verdicts or not self.files:
            return 2
        return 1 if verdicts & {"suspicious", "malicious"} else 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "tool": "bastion-scan",
            "policy": self.policy,
            "safe": self.safe,
            "files": [f.to_dict() for f in self.files],
        }


_SARIF_LEVEL = {
    "info": "note",
    "low": "note",
    "medium": "warning",
    "high": "error",
    "critical": "error",
}


def to_sarif(report: ScanReport, version: str) -> dict[str, Any]:
    """SARIF 2.1.0 log: one rule per rule id, one result per finding."""
    rules: dict[str, dict[str, Any]] = {}
    results: list[dict[str, Any]] = []
    for file in report.files:
        uri = file.path.split("!", 1)[0]
        for finding in file.findings:
            rules.setdefault(
                finding.rule,
                {"id": finding.rule, "shortDescription": {"text": finding.rule.replace(".", " ")}},
            )
            results.append(
                {
                    "ruleId": finding.rule,
                    "level": _SARIF_LEVEL[finding.severity],
                    "message": {"text": f"{file.path}: {finding.message}"},
                    "locations": [{"physicalLocation": {"artifactLocation": {"uri": uri}}}],
                    "properties": {
                        "verdict": file.verdict,
                        "format": file.format,
                        "location": finding.location,
                        "global": finding.global_,
                    },
                }
            )
    return {
        "$schema": "https://json.schemastore.org/sarif-2.1.0.json",
        "version": "2.1.0",
        "runs": [
            {
                "tool": {
                    "driver": {
                        "name": "bastion-scan",
                        "version": version,
                        "rules": list(rules.values()),
                    }
                },
                "results": results,
            }
        ],
    }
