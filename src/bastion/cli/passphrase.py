"""Passphrases for private keys and encryption: a file, the environment, or a prompt.

Typer-free, so the hot `sign` command can use it.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

FILE_HELP = "Read the passphrase from this file (first line)."


def passphrase(passphrase_file: Path | None, *, purpose: str, confirm: bool = False) -> bytes:
    """From `--passphrase-file`, else `BASTION_PASSPHRASE`, else a prompt on a terminal."""
    from bastion.core.errors import InputError, UsageError
    from bastion.integrity.keys import PASSPHRASE_ENV

    if passphrase_file is not None:
        try:
            text = passphrase_file.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise InputError(
                f"cannot read {passphrase_file}: {exc.strerror}", fix="check the path"
            ) from exc
        value = text[0] if text else ""
    elif os.environ.get(PASSPHRASE_ENV):
        value = os.environ[PASSPHRASE_ENV]
    elif sys.stdin.isatty():
        value = _prompt(f"Passphrase for {purpose}: ", confirm)
    else:
        raise UsageError(
            f"a passphrase is needed for {purpose} and there is no terminal to ask on",
            fix=f"pass --passphrase-file or set {PASSPHRASE_ENV}",
        )
    if not value:
        raise UsageError("the passphrase is empty", fix="use a non-empty passphrase")
    return value.encode()


def _prompt(text: str, confirm: bool) -> str:
    """A hidden prompt, asked again while empty; with `confirm`, until two entries match."""
    from getpass import getpass

    while True:
        value = ""
        while not value:
            value = getpass(text)
        if not confirm or getpass("Repeat for confirmation: ") == value:
            return value
        print("Error: The two entered values do not match.", file=sys.stderr)


def private_key(path: Path, passphrase_file: Path | None) -> Any:
    """Load a private key, asking for its passphrase only if it is encrypted."""
    from bastion.integrity.keys import load_private_key

    try:
        encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    except OSError:
        encrypted = False  # load_private_key reports the unreadable path
    secret = passphrase(passphrase_file, purpose=str(path)) if encrypted else None
    return load_private_key(path, secret)
