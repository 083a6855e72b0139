"""`bastion keygen | encrypt | decrypt`: keys and encryption at rest.

`sign` and `verify` are hot commands with their own modules (`bastion.cli.sign`,
`bastion.cli.verify`). Passphrases come from `--passphrase-file`, else
`BASTION_PASSPHRASE`, else a prompt.
"""

from __future__ import annotations

from pathlib import Path

import typer

from bastion.cli.passphrase import FILE_HELP as PASSPHRASE_FILE_HELP
from bastion.cli.passphrase import passphrase as _passphrase
from bastion.cli.passphrase import private_key as _private_key


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen_command)
    app.command("encrypt")(encrypt_command)
    app.command("decrypt")(decrypt_command)


def keygen_command(
    algorithm: str = typer.Option(
        "ed25519",
        "--algorithm",
        "-a",
        help="ed25519, ecdsa-p256, ml-dsa-65, hybrid or x25519-mlkem768.",
    ),
    out: Path = typer.Option(..., "--out", help="Directory for private.pem and public.pem."),
    no_passphrase: bool = typer.Option(
        False, "--no-passphrase", help="Store the private key unencrypted."
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help=PASSPHRASE_FILE_HELP
    ),
) -> None:
    """Make a signing key pair, or a recipient key pair for encryption."""
    from bastion.integrity.keys import generate, write_keypair

    key = generate(algorithm)
    secret = (
        None if no_passphrase else _passphrase(passphrase_file, purpose="the new key", confirm=True)
    )
    private, public = write_keypair(key, out, secret)
    state = "unencrypted" if secret is None else "passphrase-encrypted"
    typer.echo(f"{algorithm} key pair: {private} ({state}), {public}")


def encrypt_command(
    path: Path = typer.Argument(..., help="File or directory to encrypt."),
    recipient: list[Path] = typer.Option(
        [], "--recipient", help="Recipient public key (repeatable)."
    ),
    passphrase: bool = typer.Option(
        False, "--passphrase", help="Also wrap the data key with a passphrase."
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help=PASSPHRASE_FILE_HELP
    ),
    out: Path | None = typer.Option(None, "--out", help="Output path [PATH.enc]."),
) -> None:
    """Encrypt with AES-256-GCM; the data key is wrapped for each recipient and/or a passphrase."""
    from bastion.core.errors import InputError
    from bastion.integrity.crypt import (
        KeyWrapper,
        PassphraseWrapper,
        RecipientWrapper,
        default_output,
        encrypt_path,
    )
    from bastion.integrity.keys import load_public_key

    wrappers: list[KeyWrapper] = [RecipientWrapper(load_public_key(r)) for r in recipient]
    if passphrase or passphrase_file is not None:
        wrappers.append(
            PassphraseWrapper(_passphrase(passphrase_file, purpose="encryption", confirm=True))
        )
    target = out or default_output(path, encrypting=True)
    if not path.exists():
        raise InputError(f"no file or directory at {path}", fix="check the path")
    if target.exists():
        raise InputError(f"{target} already exists", fix="pass another --out or remove it")
    encrypt_path(path, target, wrappers)
    typer.echo(f"encrypted {path} -> {target}")


def decrypt_command(
    path: Path = typer.Argument(..., help="Encrypted file or directory."),
    key: Path | None = typer.Option(None, "--key", help="Recipient private key (PEM)."),
    passphrase: bool = typer.Option(
        False, "--passphrase", help="Unlock with the file's passphrase."
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help=PASSPHRASE_FILE_HELP
    ),
    out: Path | None = typer.Option(None, "--out", help="Output path [PATH without .enc]."),
) -> None:
    """Decrypt; the output appears only if every segment authenticated."""
    from bastion.core.errors import InputError, UsageError
    from bastion.integrity.crypt import (
        KeyWrapper,
        PassphraseWrapper,
        RecipientWrapper,
        decrypt_path,
        default_output,
    )

    wrappers: list[KeyWrapper] = []
    if key is not None:
        wrappers.append(RecipientWrapper.for_private(_private_key(key, passphrase_file)))
    if passphrase:
        wrappers.append(PassphraseWrapper(_passphrase(passphrase_file, purpose="decryption")))
    if not wrappers:
        raise UsageError("no way to decrypt given", fix="pass --key PRIVATE_KEY or --passphrase")
    target = out or default_output(path, encrypting=False)
    if not path.exists():
        raise InputError(f"no file or directory at {path}", fix="check the path")
    if target.exists():
        raise InputError(f"{target} already exists", fix="pass another --out or remove it")
    decrypt_path(path, target, wrappers)
    typer.echo(f"decrypted {path} -> {target}")
