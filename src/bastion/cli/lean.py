"""What the hot commands (`bastion.cli.entry.HOT`) share: argparse and the error table.

They import neither Typer nor rich, so a pipeline step that only scans, signs or
verifies pays for Python, argparse and the work itself.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable


def parser(command: str, description: str) -> argparse.ArgumentParser:
    """A parser for `bastion COMMAND` that takes no abbreviated options (as Typer does not)."""
    return argparse.ArgumentParser(
        prog=f"bastion {command}",
        description=description,
        allow_abbrev=False,
        formatter_class=_formatter,
    )


def _formatter(prog: str) -> argparse.HelpFormatter:
    """argparse's formatter, sized without `shutil` (which it would import on every run)."""
    return argparse.HelpFormatter(prog, width=_columns() - 2)


def _columns() -> int:
    """Terminal width as `shutil.get_terminal_size` finds it: $COLUMNS, the tty, else 80."""
    try:
        if int(os.environ["COLUMNS"]) > 0:
            return int(os.environ["COLUMNS"])
    except (KeyError, ValueError):
        pass
    stdout = sys.__stdout__
    try:
        return (os.get_terminal_size(stdout.fileno()).columns if stdout else 0) or 80
    except (ValueError, OSError):  # closed, detached, or not a terminal
        return 80


def run(body: Callable[[], int]) -> int:
    """The exit code of `body()`; a BastionError becomes its message, fix and code."""
    from bastion.core.errors import BastionError

    try:
        return body()
    except BastionError as exc:
        print(f"error: {exc.message}" + (f"\n  fix: {exc.fix}" if exc.fix else ""), file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("aborted", file=sys.stderr)
        return 130


def echo(text: str) -> None:
    """One line (or block) of output on stdout."""
    print(text, flush=True)
