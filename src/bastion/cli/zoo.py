"""`bastion zoo`: list and build the built-in demo models."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    app.command("zoo")(zoo_command)


def zoo_command(
    build: list[str] = typer.Option([], "--build", help="Train and cache these models now."),
) -> None:
    """List the built-in models (use them as builtin:NAME)."""
    from bastion.zoo import ZOO
    from bastion.zoo import build as build_model

    for name in build:
        build_model(name)
    for name, e in ZOO.items():
        typer.echo(f"builtin:{name:<16} {e.kind:<8} {e.description}")
