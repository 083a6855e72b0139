"""`bastion report`: report tooling (the JSON Schema)."""

from __future__ import annotations

import typer

report_app = typer.Typer(help="Report tooling.", no_args_is_help=True)


def register(app: typer.Typer) -> None:
    app.add_typer(report_app, name="report")


@report_app.command("schema")
def schema_command() -> None:
    """Print the JSON Schema that every report.json validates against."""
    import json

    from bastion.assess.report import schema

    typer.echo(json.dumps(schema(), indent=2))
