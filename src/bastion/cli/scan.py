"""`bastion scan`: find code hidden in model files without running it."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("scan")(scan_command)


def scan_command(
    paths: list[Path] = typer.Argument(..., help="Files or directories (scanned recursively)."),
    fmt: str = typer.Option("text", "--format", help="text, json or sarif."),
    policy: str = typer.Option(
        "default", "--policy", help="default, or strict (unknown imports are malicious)."
    ),
    allow: list[str] = typer.Option(
        [], "--allow", help="Allow MODULE:NAME (or MODULE:*) for this run; repeatable."
    ),
    allowlist: list[Path] = typer.Option(
        [], "--allowlist", help="TOML/JSON file with [allow] globals = [...]; repeatable."
    ),
    output: Path | None = typer.Option(
        None, "--output", "-o", help="Write the report here instead of stdout."
    ),
) -> None:
    """Scan model files without running them.

    Exit 0 all safe, 1 something suspicious or malicious, 2 a file could not be scanned.
    """
    import json

    from bastion import __version__
    from bastion.core.errors import UsageError
    from bastion.integrity.scan.engine import scan_paths
    from bastion.integrity.scan.policy import load_policy
    from bastion.integrity.scan.report import to_sarif

    if fmt not in ("text", "json", "sarif"):
        raise UsageError(f"unknown format {fmt!r}", fix="choose text, json or sarif")
    report = scan_paths(list(paths), load_policy(policy, allow=allow, files=allowlist))
    if fmt == "json":
        text = json.dumps(report.to_dict(), indent=2)
    elif fmt == "sarif":
        text = json.dumps(to_sarif(report, __version__), indent=2)
    else:
        text = _render_text(report)
    if output is not None:
        from bastion.core.fs import write_bytes_atomic

        write_bytes_atomic(output, (text + "\n").encode("utf-8"))
    else:
        typer.echo(text)
    raise typer.Exit(report.exit_code)


def _render_text(report: object) -> str:
    from bastion.integrity.scan.report import ScanReport

    assert isinstance(report, ScanReport)
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
