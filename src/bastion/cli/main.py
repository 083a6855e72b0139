"""The Typer app: built from the command modules; maps errors to exit codes.

Command modules import only typer at module level; heavy libraries (torch, FastAPI,
matplotlib) are imported inside the commands, so `bastion --version` starts fast. The
hot commands (`bastion.cli.entry.HOT`) are listed here as pass-throughs: their words
go unparsed to the argparse implementation the console script runs directly.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence

import typer

from bastion import __version__
from bastion.cli.entry import HOT
from bastion.core.errors import BastionError

app = typer.Typer(
    name="bastion",
    help="Secure machine-learning models: integrity, assessment, hardening, gateway, LLM guard.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

# One module per command group, each with `register(app)`.
COMMAND_MODULES = (
    "assess",
    "attack_sim",
    "audit",
    "demo",
    "harden",
    "integrity",
    "keys",
    "llm",
    "report",
    "sanitize",
    "serve",
    "watermark",
    "zoo",
)

for name in COMMAND_MODULES:
    importlib.import_module(f"bastion.cli.{name}").register(app)


def _pass_through(name: str, module_name: str) -> None:
    """List hot command `name`; its arguments (and `--help`) go to `module.main`."""
    module = importlib.import_module(module_name)

    def command(ctx: typer.Context) -> None:
        raise typer.Exit(module.main(list(ctx.args)))

    app.command(
        name,
        help=module.HELP,
        add_help_option=False,
        context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
    )(command)


for _name, _module in HOT.items():
    _pass_through(_name, _module)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"bastion {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Show the version."
    ),
) -> None:
    """Bastion secures machine-learning models across their whole life."""


def main(argv: Sequence[str] | None = None) -> None:
    """Run the CLI; every BastionError becomes a one-line message and its exit code."""
    try:
        code = app(
            args=list(argv) if argv is not None else None,
            prog_name="bastion",
            standalone_mode=False,
        )
    except typer.Abort:
        typer.echo("aborted", err=True)
        sys.exit(130)
    except typer.TyperException as exc:  # usage errors from Typer's parser
        show = getattr(exc, "show", None)
        if callable(show):
            show()
        else:
            typer.echo(f"error: {exc}", err=True)
        sys.exit(2)
    except BastionError as exc:
        typer.echo(f"error: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), err=True)
        sys.exit(exc.exit_code)
    sys.exit(code if isinstance(code, int) else 0)
