"""`bastion assess`: attack a model and write a scored report."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("assess")(assess_command)


def assess_command(
    model: str = typer.Argument(..., help="builtin:NAME or a .safetensors / .skops / .onnx file."),
    data: Path | None = typer.Option(
        None, "--data", help="Labelled held-out data (.npz with x, y, or .csv)."
    ),
    train_data: Path | None = typer.Option(
        None, "--train-data", help="The model's training data, if known."
    ),
    checks: str | None = typer.Option(
        None, "--checks", help="Comma-separated check names (default: all)."
    ),
    budget: str = typer.Option("standard", "--budget", help="quick, standard or thorough."),
    seed: int = typer.Option(0, "--seed", help="Seed for every randomized step."),
    out: Path = typer.Option(
        Path("bastion-report"), "--out", help="Report directory (replaced atomically)."
    ),
    fail_on: str | None = typer.Option(
        None, "--fail-on", help="Exit 3 if a finding reaches this severity."
    ),
) -> None:
    """Attack MODEL with every applicable check and write report.json and index.html."""
    from bastion.assess.check import Budget
    from bastion.assess.registry import select
    from bastion.assess.runner import assess
    from bastion.assess.target import resolve
    from bastion.cli.common import parse_severity
    from bastion.core.errors import UsageError

    gate = parse_severity(fail_on)
    try:
        level = Budget(budget)
    except ValueError:
        raise UsageError(
            f"unknown budget {budget!r}", fix="choose quick, standard or thorough"
        ) from None
    selected = select([c.strip() for c in checks.split(",") if c.strip()] if checks else None)
    target, assessment_data = resolve(model, data, train_data)
    report = assess(target, assessment_data, selected, spec=model, budget=level, seed=seed, out=out)
    finish(report, out, gate)


def finish(report: object, out: Path, gate: object) -> None:
    """Print the scorecard and apply the exit-code rules shared by `assess` and `demo`."""
    from rich.table import Table

    from bastion.assess.report import Report
    from bastion.cli.common import SEVERITY_COLOURS, err
    from bastion.cli.common import out as console
    from bastion.core.errors import GateTripped, InputError
    from bastion.core.finding import Severity

    assert isinstance(report, Report)
    table = Table(title="Scorecard")
    for column in ("check", "worst severity", "headline", "value"):
        table.add_column(column)
    for result in report.results:
        head = result.headline
        sev = result.worst
        table.add_row(
            result.title,
            f"[{SEVERITY_COLOURS[sev]}]{sev.value}[/]" if sev else result.status,
            head.metric if head else result.note,
            f"{head.value:.4g}" if head else "",
        )
    console.print(table)
    console.print(f"Report: {(out / 'index.html').resolve()}")
    failed = [r for r in report.results if r.status == "error"]
    if failed:
        names = ", ".join(f"{r.name} ({r.note})" for r in failed)
        raise InputError(
            f"check(s) failed to run: {names}", fix="see the traceback above; the report lists them"
        )
    if isinstance(gate, Severity) and report.worst is not None and report.worst >= gate:
        err.print(f"--fail-on {gate.value}: worst finding is {report.worst.value}")
        raise GateTripped(f"a finding reached severity {report.worst.value} (gate: {gate.value})")
