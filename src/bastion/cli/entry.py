"""The `bastion` console script: the hot commands start without Typer.

`scan`, `sign` and `verify` run in pipelines on every build and before every load, so
they parse their options with argparse (`bastion.cli.lean`) and import only what they
use. Every other command, and `bastion --help`, goes through the Typer app in
`bastion.cli.main`, which lists the hot commands as pass-throughs to the same code.
"""

from __future__ import annotations

import sys

# command -> module whose `main(argv) -> int` runs it
HOT = {"scan": "bastion.cli.scan", "sign": "bastion.cli.sign", "verify": "bastion.cli.verify"}


def main(argv: list[str] | None = None) -> None:
    """Run one command and exit with its code from the shared table."""
    args = sys.argv[1:] if argv is None else list(argv)
    if args and args[0] in HOT:
        from importlib import import_module

        sys.exit(import_module(HOT[args[0]]).main(args[1:]))
    from bastion.cli.main import main as app_main

    app_main(args)
