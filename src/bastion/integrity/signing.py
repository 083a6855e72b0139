"""Sign a model and verify it: manifest -> statement -> DSSE bundle, and back.

Verification trusts nothing in the bundle until a trusted key verified it; hashing
settings then come from the signed statement, never from the caller.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from bastion.core.errors import InputError, SecurityError, UsageError
from bastion.core.fs import write_bytes_atomic
from bastion.integrity import dsse, manifest, statement
from bastion.integrity.keys import PrivateKey, PublicKey
from bastion.integrity.manifest import Diff, Manifest

SIGNATURE_NAME = "model.sig"


class ModelMismatchError(SecurityError):
    """The files on disk are not the files that were signed."""

    def __init__(self, diff: Diff) -> None:
        parts = [
            f"{label}: {', '.join(names)}"
            for label, names in (
                ("changed", diff.changed),
                ("missing", diff.missing),
                ("extra", diff.extra),
            )
            if names
        ]
        super().__init__(
            "the model does not match its signature; " + "; ".join(parts),
            fix="restore the signed files, or re-sign if the change is intended",
        )
        self.diff = diff


@dataclass(frozen=True)
class SignResult:
    signature: Path
    manifest: Manifest
    algorithm: str


@dataclass(frozen=True)
class VerifyResult:
    key: PublicKey
    manifest: Manifest
    diff: Diff


def default_signature_path(model: Path) -> Path:
    """`MODEL/model.sig` for a directory, `FILE.sig` beside a single file."""
    return model / SIGNATURE_NAME if model.is_dir() else model.with_name(model.name + ".sig")


def _relative_inside(model: Path, path: Path) -> str | None:
    if not model.is_dir():
        return None
    try:
        return PurePosixPath(path.resolve().relative_to(model.resolve())).as_posix()
    except ValueError:
        return None


def expand_ignores(model: Path, patterns: Sequence[str]) -> list[str]:
    """Turn --ignore globs into the concrete relative paths they match now."""
    if not patterns:
        return []
    if not model.is_dir():
        raise UsageError(
            "--ignore applies to a model directory", fix="drop --ignore for a single file"
        )
    names: list[str] = []
    for entry in manifest.list_files(model, manifest.GIT_PATHS):
        if any(
            fnmatch.fnmatchcase(entry.name, p)
            or fnmatch.fnmatchcase(PurePosixPath(entry.name).name, p)
            for p in patterns
        ):
            names.append(entry.name)
    return names


def sign_model(
    model: Path,
    key: PrivateKey,
    signature: Path | None = None,
    ignore: Sequence[str] = (),
    hash_type: str = "sha256",
    shard_size: int | None = None,
    workers: int | None = None,
) -> SignResult:
    """Hash `model`, sign the statement with `key`, write the bundle atomically."""
    if key.algorithm not in dsse.KEYIDS and key.algorithm != "hybrid":
        raise UsageError(
            f"{key.algorithm} keys cannot sign",
            fix="use an ecdsa-p256, ed25519, ml-dsa-65 or hybrid key",
        )
    sig_path = signature or default_signature_path(model)
    ignored = expand_ignores(model, ignore)
    inside = _relative_inside(model, sig_path)
    if inside is not None:
        ignored.append(inside)
    built = manifest.build(
        model, manifest.new_serialization(hash_type, shard_size, ignored), workers
    )
    write_bytes_atomic(sig_path, dsse.sign(statement.to_payload(built, key.algorithm), key))
    return SignResult(sig_path, built, key.algorithm)


def read_signature(path: Path) -> dsse.Bundle:
    """Read and parse a signature file."""
    try:
        data = path.read_bytes()
    except FileNotFoundError as exc:
        raise InputError(
            f"no signature at {path}", fix="sign the model first, or pass --signature"
        ) from exc
    return dsse.parse(data)


def authenticate(bundle: dsse.Bundle, keys: Sequence[PublicKey]) -> tuple[PublicKey, Manifest]:
    """The first trusted key that verifies the bundle, and the signed manifest."""
    if not keys:
        raise UsageError("no trusted key given", fix="pass --key PUBLIC_KEY (repeatable)")
    errors: list[SecurityError] = []
    for key in keys:
        try:
            dsse.verify(bundle, key)
        except SecurityError as exc:
            errors.append(exc)
            continue
        signed, declared = statement.from_payload(bundle.payload)
        if (declared or "ecdsa-p256") != key.algorithm:
            raise dsse.AlgorithmMismatchError(
                f"the signed statement says {declared or 'ecdsa-p256'} "
                f"but a {key.algorithm} key verified it",
                fix="a hybrid signature was stripped to one half; do not trust this model",
            )
        return key, signed
    wrong = (dsse.WrongKeyError, dsse.AlgorithmMismatchError)
    specific = [e for e in errors if not isinstance(e, wrong)]
    if specific:
        raise specific[0]
    if len(keys) == 1 or all(isinstance(e, dsse.AlgorithmMismatchError) for e in errors):
        raise errors[0]
    raise dsse.WrongKeyError(
        f"none of the {len(keys)} trusted keys signed this model",
        fix="verify with the public key that matches the signing key",
    )


def verify_model(
    model: Path,
    keys: Sequence[PublicKey],
    signature: Path | None = None,
    workers: int | None = None,
) -> VerifyResult:
    """Verify the signature, then every file; raise ModelMismatchError listing differences."""
    sig_path = signature or default_signature_path(model)
    if not model.exists():
        raise InputError(f"no model at {model}", fix="pass an existing file or directory")
    key, signed = authenticate(read_signature(sig_path), keys)
    diff = manifest.compare(model, signed, workers)
    if not diff.ok:
        raise ModelMismatchError(diff.naming(model))
    return VerifyResult(key, signed, diff)
