"""`bastion scan`: find code hidden in model files without running it.

A hot command (see `bastion.cli.entry`): argparse only, and the scanner imported when
the options are valid.
"""

from __future__ import annotations

from bastion.cli import lean

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (start-up)
if TYPE_CHECKING:
    import argparse

    from bastion.integrity.scan.report import ScanReport

HELP = "Scan model files without running them."
DESCRIPTION = (
    f"{HELP} Exit 0 all safe, 1 something suspicious or malicious, 2 a file could not be scanned."
)


def build_parser() -> argparse.ArgumentParser:
    parser = lean.parser("scan", DESCRIPTION)
    add = parser.add_argument
    add("paths", nargs="+", metavar="PATH", help="Files or directories (scanned recursively).")
    add("--format", dest="fmt", default="text", help="text, json or sarif. [default: text]")
    add(
        "--policy",
        default="default",
        help="default, or strict (unknown imports are malicious). [default: default]",
    )
    add(
        "--allow",
        action="append",
        default=[],
        metavar="MODULE:NAME",
        help="Allow MODULE:NAME (or MODULE:*) for this run; repeatable.",
    )
    add(
        "--allowlist",
        action="append",
        default=[],
        metavar="FILE",
        help="TOML/JSON file with [allow] globals = [...]; repeatable.",
    )
    add("--output", "-o", metavar="FILE", help="Write the report here instead of stdout.")
    return parser


def main(argv: list[str]) -> int:
    """Parse `argv` (the words after `scan`) and run the scan; returns the exit code."""
    opts = build_parser().parse_args(argv)
    return lean.run(lambda: _scan(opts))


def _scan(opts: argparse.Namespace) -> int:
    import json

    from bastion.core.errors import UsageError
    from bastion.integrity.scan.engine import scan_paths
    from bastion.integrity.scan.policy import load_policy

    if opts.fmt not in ("text", "json", "sarif"):
        raise UsageError(f"unknown format {opts.fmt!r}", fix="choose text, json or sarif")
    policy = load_policy(opts.policy, allow=opts.allow, files=opts.allowlist)
    report = scan_paths(opts.paths, policy)
    if opts.fmt == "json":
        text = json.dumps(report.to_dict(), indent=2)
    elif opts.fmt == "sarif":
        from bastion import __version__
        from bastion.integrity.scan.report import to_sarif

        text = json.dumps(to_sarif(report, __version__), indent=2)
    else:
        text = _render_text(report)
    if opts.output is not None:
        from pathlib import Path

        from bastion.core.fs import write_bytes_atomic

        write_bytes_atomic(Path(opts.output), (text + "\n").encode("utf-8"))
    else:
        lean.echo(text)
    return report.exit_code


def _render_text(report: ScanReport) -> str:
    lines = []
    for file in report.files:
        lines.append(f"{file.verdict.upper():<10} {file.path}  [{file.format}]")
        for f in file.findings:
            if f.effect == "none" and file.verdict == "safe":
                continue
            lines.append(
                f"    {f.severity:<8} {f.rule}: {f.message}"
                + (f"  ({f.location})" if f.location and f.location != file.path else "")
            )
    counts = {
        v: sum(1 for f in report.files if f.verdict == v)
        for v in ("safe", "suspicious", "malicious", "error")
    }
    lines.append(f"{len(report.files)} files: " + ", ".join(f"{n} {v}" for v, n in counts.items()))
    return "\n".join(lines)
