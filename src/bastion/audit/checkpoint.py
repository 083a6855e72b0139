"""Signed checkpoints (tree heads) and the gateway's Ed25519 audit key."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.core.errors import InputError

KEY_FILE = "gateway-audit.key"
FORMAT = "bastion-audit-checkpoint/v1"


def key_id(public_key: Ed25519PublicKey) -> str:
    """A short stable name for a public key: hex SHA-256 of its raw bytes, first 16 bytes."""
    raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return hashlib.sha256(raw).hexdigest()[:32]


@dataclass(frozen=True)
class SignedCheckpoint:
    """A tree head (size and root of the log at a moment) signed by the audit key.

    The signed body names the log (`log_id`), so a checkpoint of one log cannot be
    replayed against another.
    """

    log_id: str
    tree_size: int
    root_hash: bytes
    timestamp_ms: int
    key_id: str
    signature: bytes

    def body(self) -> bytes:
        """The exact bytes that are signed."""
        root = base64.b64encode(self.root_hash).decode()
        return f"{FORMAT}\n{self.log_id}\n{self.tree_size}\n{root}\n{self.timestamp_ms}\n".encode()

    def verify(self, public_key: Ed25519PublicKey) -> bool:
        """True when the signature over `body()` is valid for `public_key`."""
        if self.key_id != key_id(public_key):
            return False
        try:
            public_key.verify(self.signature, self.body())
        except InvalidSignature:
            return False
        return True

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "log_id": self.log_id,
            "tree_size": self.tree_size,
            "root_hash": self.root_hash.hex(),
            "timestamp_ms": self.timestamp_ms,
            "key_id": self.key_id,
            "signature": base64.b64encode(self.signature).decode(),
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SignedCheckpoint:
        try:
            if data.get("format") != FORMAT:
                raise ValueError(f"format is {data.get('format')!r}")
            return cls(
                log_id=str(data["log_id"]),
                tree_size=int(data["tree_size"]),
                root_hash=bytes.fromhex(data["root_hash"]),
                timestamp_ms=int(data["timestamp_ms"]),
                key_id=str(data["key_id"]),
                signature=base64.b64decode(data["signature"], validate=True),
            )
        except (KeyError, ValueError, TypeError) as exc:
            raise InputError(
                f"not a Bastion audit checkpoint: {exc}",
                fix="pass the output of `bastion audit checkpoint`",
            ) from exc

    @classmethod
    def load(cls, path: str | Path) -> SignedCheckpoint:
        try:
            return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(
                f"cannot read checkpoint {path}: {exc}", fix="pass a checkpoint JSON file"
            ) from exc


def sign_checkpoint(
    key: Ed25519PrivateKey, log_id: str, tree_size: int, root_hash: bytes, timestamp_ms: int
) -> SignedCheckpoint:
    """Sign the tree head (`tree_size`, `root_hash`) of log `log_id`."""
    unsigned = SignedCheckpoint(
        log_id, tree_size, root_hash, timestamp_ms, key_id(key.public_key()), b""
    )
    return SignedCheckpoint(**{**unsigned.__dict__, "signature": key.sign(unsigned.body())})


def load_or_create_key(state_dir: Path) -> Ed25519PrivateKey:
    """The audit signing key in `state_dir`, created (mode 0600) if absent.

    Creation writes a private temporary file and hard-links it into place, so two
    replicas starting together end up with the same key and nobody reads half a file.
    """
    path = state_dir / KEY_FILE
    if not path.exists():
        state_dir.mkdir(parents=True, exist_ok=True)
        pem = Ed25519PrivateKey.generate().private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        fd, tmp = tempfile.mkstemp(prefix=f".{KEY_FILE}.", dir=state_dir)
        try:
            os.fchmod(fd, 0o600)
            with os.fdopen(fd, "wb") as handle:
                handle.write(pem)
                handle.flush()
                os.fsync(handle.fileno())
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
        finally:
            os.unlink(tmp)
    mode = path.stat().st_mode
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise InputError(
            f"audit signing key {path} is readable by other users (mode {stat.S_IMODE(mode):o})",
            fix=f"chmod 600 {path}",
        )
    key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise InputError(
            f"{path} is not an Ed25519 private key", fix="remove it to have a new one created"
        )
    return key
