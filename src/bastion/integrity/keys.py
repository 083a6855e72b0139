"""Key generation and loading: signing keys and recipient (encryption) keys, as PEM.

Signing: `ecdsa-p256` (interoperates with OpenSSF model-signing), `ed25519`, `ml-dsa-65`
(FIPS 204) and `hybrid` (Ed25519 + ML-DSA-65; both must verify). Recipients:
`x25519-mlkem768` (the HPKE MLKEM768-X25519 hybrid KEM). A key made of two algorithms
is stored as two PEM blocks in one file. Private keys are encrypted with a passphrase
(`BestAvailableEncryption`) unless the caller explicitly asks for none.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bastion.core.errors import InputError, UsageError
from bastion.core.fs import write_bytes_atomic

SIGNING_ALGORITHMS = ("ecdsa-p256", "ed25519", "ml-dsa-65", "hybrid")
RECIPIENT_ALGORITHMS = ("x25519-mlkem768",)
ALGORITHMS = SIGNING_ALGORITHMS + RECIPIENT_ALGORITHMS
PASSPHRASE_ENV = "BASTION_PASSPHRASE"
PRIVATE_NAME = "private.pem"
PUBLIC_NAME = "public.pem"
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z ]+)-----.+?-----END \1-----\r?\n?", re.DOTALL)


class WrongPassphraseError(InputError):
    """A private key could not be decrypted with the passphrase given."""


@dataclass(frozen=True)
class PublicKey:
    """A verifying or recipient key; `parts` are `cryptography` key objects."""

    algorithm: str
    parts: tuple[Any, ...]
    source: str = ""

    @property
    def pem(self) -> bytes:
        from cryptography.hazmat.primitives import serialization as ser

        return b"".join(
            p.public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
            for p in self.parts
        )

    @property
    def hint(self) -> str:
        """SHA-256 of the public PEM: model-signing's `publicKey.hint`."""
        return hashlib.sha256(self.pem).hexdigest()


@dataclass(frozen=True)
class PrivateKey:
    """A signing or recipient private key."""

    algorithm: str
    parts: tuple[Any, ...]
    source: str = ""

    def public(self) -> PublicKey:
        return PublicKey(self.algorithm, tuple(p.public_key() for p in self.parts), self.source)


def _classify(parts: Sequence[Any], source: str) -> str:
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, x25519

    def kind(key: Any) -> str:
        if isinstance(key, ec.EllipticCurvePrivateKey | ec.EllipticCurvePublicKey):
            if key.curve.name != "secp256r1":
                raise InputError(
                    f"{source}: EC curve {key.curve.name} is not supported", fix="use P-256"
                )
            return "ecdsa-p256"
        if isinstance(key, ed25519.Ed25519PrivateKey | ed25519.Ed25519PublicKey):
            return "ed25519"
        if isinstance(key, mldsa.MLDSA65PrivateKey | mldsa.MLDSA65PublicKey):
            return "ml-dsa-65"
        if isinstance(key, mlkem.MLKEM768PrivateKey | mlkem.MLKEM768PublicKey):
            return "ml-kem-768"
        if isinstance(key, x25519.X25519PrivateKey | x25519.X25519PublicKey):
            return "x25519"
        raise InputError(
            f"{source}: unsupported key type {type(key).__name__}",
            fix=f"use {', '.join(ALGORITHMS)}",
        )

    kinds = tuple(kind(p) for p in parts)
    if len(kinds) == 1 and kinds[0] in SIGNING_ALGORITHMS:
        return kinds[0]
    if kinds == ("ed25519", "ml-dsa-65"):
        return "hybrid"
    if kinds == ("ml-kem-768", "x25519"):
        return "x25519-mlkem768"
    raise InputError(
        f"{source}: unsupported key combination {'+'.join(kinds)}",
        fix=f"use {', '.join(ALGORITHMS)}",
    )


def _blocks(data: bytes, source: str) -> list[bytes]:
    blocks = [m.group(0) for m in _PEM_BLOCK.finditer(data)]
    if not blocks:
        raise InputError(f"{source} holds no PEM key", fix="pass a key made by `bastion keygen`")
    return blocks


def _read(path: str | Path) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise InputError(
            f"cannot read key {path}: {exc.strerror}", fix="check the key path"
        ) from exc


def load_public_key(path: str | Path) -> PublicKey:
    """Load a public key file (one or two PEM blocks)."""
    from cryptography.hazmat.primitives import serialization as ser

    source = str(path)
    data = _read(path)
    if b"PRIVATE KEY" in data:
        raise UsageError(
            f"{source} is a private key",
            fix="pass the public key (public.pem) to verify or encrypt",
        )
    try:
        parts = tuple(ser.load_pem_public_key(b) for b in _blocks(data, source))
    except ValueError as exc:
        raise InputError(
            f"{source} is not a valid public key: {exc}", fix="pass a key made by `bastion keygen`"
        ) from exc
    return PublicKey(_classify(parts, source), parts, source)


def load_private_key(path: str | Path, passphrase: bytes | None) -> PrivateKey:
    """Load a private key file; `passphrase` decrypts it when it is encrypted."""
    from cryptography.hazmat.primitives import serialization as ser

    source = str(path)
    data = _read(path)
    encrypted = b"ENCRYPTED PRIVATE KEY" in data
    if encrypted and not passphrase:
        raise UsageError(
            f"{source} is encrypted and no passphrase was given",
            fix=f"pass --passphrase-file, set {PASSPHRASE_ENV}, or answer the prompt",
        )
    parts: list[Any] = []
    for block in _blocks(data, source):
        try:
            parts.append(
                ser.load_pem_private_key(block, passphrase if b"ENCRYPTED" in block else None)
            )
        except (ValueError, TypeError) as exc:
            if encrypted:
                raise WrongPassphraseError(
                    f"cannot decrypt {source}: wrong passphrase",
                    fix="give the passphrase the key was made with",
                ) from exc
            raise InputError(
                f"{source} is not a valid private key: {exc}",
                fix="pass a key made by `bastion keygen`",
            ) from exc
    return PrivateKey(_classify(parts, source), tuple(parts), source)


def generate(algorithm: str) -> PrivateKey:
    """A new private key of `algorithm`."""
    from cryptography.hazmat.primitives.asymmetric import ec, ed25519, mldsa, mlkem, x25519

    makers: dict[str, Any] = {
        "ecdsa-p256": lambda: (ec.generate_private_key(ec.SECP256R1()),),
        "ed25519": lambda: (ed25519.Ed25519PrivateKey.generate(),),
        "ml-dsa-65": lambda: (mldsa.MLDSA65PrivateKey.generate(),),
        "hybrid": lambda: (
            ed25519.Ed25519PrivateKey.generate(),
            mldsa.MLDSA65PrivateKey.generate(),
        ),
        "x25519-mlkem768": lambda: (
            mlkem.MLKEM768PrivateKey.generate(),
            x25519.X25519PrivateKey.generate(),
        ),
    }
    if algorithm not in makers:
        raise UsageError(
            f"unknown algorithm {algorithm!r}", fix=f"use one of {', '.join(ALGORITHMS)}"
        )
    return PrivateKey(algorithm, makers[algorithm]())


def private_pem(key: PrivateKey, passphrase: bytes | None) -> bytes:
    """PKCS#8 PEM of every part, encrypted when `passphrase` is given."""
    from cryptography.hazmat.primitives import serialization as ser

    encryption: ser.KeySerializationEncryption = (
        ser.BestAvailableEncryption(passphrase) if passphrase else ser.NoEncryption()
    )
    return b"".join(
        p.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, encryption) for p in key.parts
    )


def write_keypair(key: PrivateKey, out_dir: Path, passphrase: bytes | None) -> tuple[Path, Path]:
    """Write `private.pem` (mode 0600) and `public.pem` into `out_dir`; never overwrite."""
    private_path, public_path = out_dir / PRIVATE_NAME, out_dir / PUBLIC_NAME
    for existing in (private_path, public_path):
        if existing.exists():
            raise InputError(
                f"{existing} already exists",
                fix="choose another --out directory or move the old key",
            )
    write_bytes_atomic(private_path, private_pem(key, passphrase))
    os.chmod(private_path, 0o600)
    write_bytes_atomic(public_path, key.public().pem)
    return private_path, public_path
