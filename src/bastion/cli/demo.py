"""`bastion demo`: the main job, end to end on the built-in demo model."""

from __future__ import annotations

from pathlib import Path

import typer

DEMO_MODEL = "builtin:digits-cnn"


def register(app: typer.Typer) -> None:
    app.command("demo")(demo_command)


def demo_command(
    out: Path = typer.Option(Path("bastion-report"), "--out", help="Report directory."),
    budget: str = typer.Option("standard", "--budget", help="quick, standard or thorough."),
    seed: int = typer.Option(0, "--seed"),
) -> None:
    """Build the demo model (digits-cnn), run every check, and write the report."""
    from bastion.assess.check import Budget
    from bastion.assess.registry import all_checks
    from bastion.assess.runner import assess
    from bastion.assess.target import resolve
    from bastion.cli.assess import finish
    from bastion.cli.common import err

    err.print(f"Bastion demo: assessing {DEMO_MODEL} with every registered check")
    model, data = resolve(DEMO_MODEL)
    report = assess(
        model, data, all_checks(), spec=DEMO_MODEL, budget=Budget(budget), seed=seed, out=out
    )
    finish(report, out, None)
