"""`bastion keygen | sign | verify | encrypt | decrypt`: artifact integrity commands.

Passphrases come from `--passphrase-file`, else `BASTION_PASSPHRASE`, else a prompt.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import typer

PASSPHRASE_FILE_HELP = "Read the passphrase from this file (first line)."


def register(app: typer.Typer) -> None:
    app.command("keygen")(keygen_command)
    app.command("sign")(sign_command)
    app.command("verify")(verify_command)
    app.command("encrypt")(encrypt_command)
    app.command("decrypt")(decrypt_command)


def _passphrase(passphrase_file: Path | None, *, purpose: str, confirm: bool = False) -> bytes:
    """The passphrase from a file, the environment, or an interactive prompt."""
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
        value = typer.prompt(
            f"Passphrase for {purpose}", hide_input=True, confirmation_prompt=confirm
        )
    else:
        raise UsageError(
            f"a passphrase is needed for {purpose} and there is no terminal to ask on",
            fix=f"pass --passphrase-file or set {PASSPHRASE_ENV}",
        )
    if not value:
        raise UsageError("the passphrase is empty", fix="use a non-empty passphrase")
    return value.encode()


def _private_key(path: Path, passphrase_file: Path | None) -> Any:
    from bastion.integrity.keys import load_private_key

    try:
        encrypted = b"ENCRYPTED PRIVATE KEY" in path.read_bytes()
    except OSError:
        encrypted = False  # load_private_key reports the unreadable path
    secret = _passphrase(passphrase_file, purpose=str(path)) if encrypted else None
    return load_private_key(path, secret)


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


def sign_command(
    model: Path = typer.Argument(..., help="Model file or directory."),
    key: Path = typer.Option(..., "--key", help="Private signing key (PEM)."),
    signature: Path | None = typer.Option(
        None, "--signature", help="Where to write the bundle [MODEL/model.sig or FILE.sig]."
    ),
    ignore: list[str] = typer.Option(
        [], "--ignore", help="Leave out files matching this glob (repeatable)."
    ),
    hash_type: str = typer.Option("sha256", "--hash", help="sha256 (sharded) or blake3."),
    shard_size: int | None = typer.Option(
        None,
        "--shard-size",
        help="SHA-256 shard size in bytes; 0 = whole files (model_signing CLI layout).",
    ),
    passphrase_file: Path | None = typer.Option(
        None, "--passphrase-file", help=PASSPHRASE_FILE_HELP
    ),
) -> None:
    """Hash every file of a model and sign the manifest (OpenSSF model-signing layout)."""
    from bastion.integrity.signing import sign_model

    result = sign_model(
        model, _private_key(key, passphrase_file), signature, ignore, hash_type, shard_size
    )
    files = len(result.manifest.files or ())
    typer.echo(f"signed {files} files with {result.algorithm}: {result.signature}")


def verify_command(
    model: Path = typer.Argument(..., help="Model file or directory."),
    key: list[Path] = typer.Option(..., "--key", help="Trusted public key (repeatable)."),
    signature: Path | None = typer.Option(
        None, "--signature", help="Bundle to check [MODEL/model.sig or FILE.sig]."
    ),
    output: str = typer.Option("text", "--format", help="text or json."),
) -> None:
    """Check the signature and every file; exit 1 listing changed, missing and extra files."""
    from bastion.core.errors import BastionError, UsageError
    from bastion.integrity.keys import load_public_key
    from bastion.integrity.signing import ModelMismatchError, verify_model

    if output not in ("text", "json"):
        raise UsageError(f"unknown format {output!r}", fix="use --format text or --format json")
    report: dict[str, Any] = {"model": str(model), "verified": False}
    try:
        result = verify_model(model, [load_public_key(k) for k in key], signature)
    except ModelMismatchError as exc:
        report.update(
            changed=exc.diff.changed,
            missing=exc.diff.missing,
            extra=exc.diff.extra,
            error=exc.message,
        )
        if output == "json":
            typer.echo(json.dumps(report, indent=2))
            raise typer.Exit(exc.exit_code) from exc
        for label, names in (
            ("changed", exc.diff.changed),
            ("missing", exc.diff.missing),
            ("extra", exc.diff.extra),
        ):
            for name in names:
                typer.echo(f"{label}: {name}")
        raise
    except BastionError as exc:
        if output != "json":
            raise
        report.update(error=exc.message, fix=exc.fix, exit_code=exc.exit_code)
        typer.echo(json.dumps(report, indent=2))
        raise typer.Exit(exc.exit_code) from exc
    files = len(result.manifest.paths())
    if output == "json":
        report.update(
            verified=True,
            key=result.key.source,
            algorithm=result.key.algorithm,
            files=files,
            hash=result.manifest.serialization.hash_type,
            changed=[],
            missing=[],
            extra=[],
        )
        typer.echo(json.dumps(report, indent=2))
        return
    typer.echo(
        f"verified {files} files; signed with {result.key.algorithm} key {result.key.source}"
    )


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
