"""Envelope encryption of models at rest: streaming AES-256-GCM with wrapped data keys.

File layout: `MAGIC | uint32 header length | header JSON | segment...`. One random
32-byte data key per artifact; each file gets a key derived from it and a random file
id (HKDF-SHA256). Segment `i` is AES-256-GCM with nonce `i (11 bytes) | final flag`
and the SHA-256 of the header bytes as associated data, so a flipped bit, a truncated
end, reordered segments or segments spliced from another file all fail to
authenticate. The data key is wrapped once per recipient by a `KeyWrapper`.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import secrets
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, Protocol

from bastion.core.errors import InputError, SecurityError, UsageError
from bastion.core.fs import atomic_directory, atomic_file
from bastion.integrity.keys import PrivateKey, PublicKey, WrongPassphraseError

MAGIC = b"BASTENC\x01"
CIPHER = "AES-256-GCM-STREAM"
DEFAULT_SEGMENT = 1 << 20
MIN_SEGMENT, MAX_SEGMENT = 1 << 12, 1 << 24
MAX_HEADER = 1 << 20
TAG = 16
DIR_MANIFEST = "manifest.enc"
OBJECTS = "objects"
_DEK_INFO = b"bastion-dek-v1"
_SEGMENT_INFO = b"bastion-segment-key-v1"


class DecryptionError(SecurityError):
    """Ciphertext failed to authenticate: altered, truncated, reordered or spliced."""


class NoMatchingKeyError(InputError):
    """None of the keys given can unwrap the file's data key."""


class KeyWrapper(Protocol):
    """Wraps a data key for one recipient (a local key, a passphrase, a cloud KMS key).

    `wrap` returns a JSON-safe stanza stored in the file header; `unwrap` returns the data
    key from a stanza addressed to it, or None when the stanza is for someone else.
    """

    def wrap(self, data_key: bytes) -> dict[str, Any]: ...

    def unwrap(self, stanza: Mapping[str, Any]) -> bytes | None: ...


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _unb64(value: Any) -> bytes:
    if not isinstance(value, str):
        raise ValueError("expected base64 text")
    return base64.b64decode(value, validate=True)


def _hpke_suite() -> Any:
    from cryptography.hazmat.primitives import hpke

    return hpke.Suite(hpke.KEM.MLKEM768_X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.AES_256_GCM)


@dataclass(frozen=True)
class RecipientWrapper:
    """HPKE with the hybrid X25519 + ML-KEM-768 KEM; the private key is needed only to unwrap."""

    public: PublicKey
    private: PrivateKey | None = None
    kind = "x25519-mlkem768"

    @classmethod
    def for_private(cls, key: PrivateKey) -> RecipientWrapper:
        return cls(key.public(), key)

    def __post_init__(self) -> None:
        if self.public.algorithm != self.kind:
            raise UsageError(
                f"{self.public.source or 'the key'} is a {self.public.algorithm} key, "
                "not a recipient key",
                fix="make one with `bastion keygen --algorithm x25519-mlkem768`",
            )

    def wrap(self, data_key: bytes) -> dict[str, Any]:
        from cryptography.hazmat.primitives import hpke

        mlkem_key, x_key = self.public.parts
        sealed = _hpke_suite().encrypt(
            data_key, hpke.MLKEM768X25519PublicKey(mlkem_key, x_key), info=_DEK_INFO
        )
        return {"type": self.kind, "hint": self.public.hint, "enc": _b64(sealed)}

    def unwrap(self, stanza: Mapping[str, Any]) -> bytes | None:
        from cryptography.hazmat.primitives import hpke

        if (
            self.private is None
            or stanza.get("type") != self.kind
            or stanza.get("hint") != self.public.hint
        ):
            return None
        mlkem_key, x_key = self.private.parts
        try:
            return bytes(
                _hpke_suite().decrypt(
                    _unb64(stanza.get("enc")),
                    hpke.MLKEM768X25519PrivateKey(mlkem_key, x_key),
                    info=_DEK_INFO,
                )
            )
        except Exception as exc:  # cryptography raises several types for a bad capsule
            raise DecryptionError(
                "the wrapped data key for this recipient does not authenticate",
                fix="the file header was altered; restore the file from a good copy",
            ) from exc


@dataclass
class PassphraseWrapper:
    """A key-encryption key derived from a passphrase with Argon2id (RFC 9106 second choice)."""

    passphrase: bytes
    time_cost: int = 3
    memory_kib: int = 64 * 1024
    lanes: int = 4
    kind = "argon2id"

    def __post_init__(self) -> None:
        if not self.passphrase:
            raise UsageError("empty passphrase", fix="give a non-empty passphrase")
        self._cache: dict[tuple[bytes, int, int, int], bytes] = {}

    def _kek(self, salt: bytes, t: int, m: int, p: int) -> bytes:
        from argon2.low_level import Type, hash_secret_raw

        key = (salt, t, m, p)
        if key not in self._cache:
            self._cache[key] = hash_secret_raw(self.passphrase, salt, t, m, p, 32, Type.ID)
        return self._cache[key]

    def wrap(self, data_key: bytes) -> dict[str, Any]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        salt = secrets.token_bytes(16)
        kek = self._kek(salt, self.time_cost, self.memory_kib, self.lanes)
        wrapped = AESGCM(kek).encrypt(b"\0" * 12, data_key, _DEK_INFO)
        return {
            "type": self.kind,
            "salt": _b64(salt),
            "t": self.time_cost,
            "m": self.memory_kib,
            "p": self.lanes,
            "wrapped": _b64(wrapped),
        }

    def unwrap(self, stanza: Mapping[str, Any]) -> bytes | None:
        from cryptography.exceptions import InvalidTag
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        if stanza.get("type") != self.kind:
            return None
        t, m, p = stanza.get("t"), stanza.get("m"), stanza.get("p")
        if not (isinstance(t, int) and isinstance(m, int) and isinstance(p, int)):
            raise DecryptionError(
                "malformed passphrase stanza", fix="restore the file from a good copy"
            )
        if not (1 <= t <= 16 and 8 * p <= m <= 4 * 1024 * 1024 and 1 <= p <= 16):
            raise DecryptionError(
                "passphrase stanza asks for unreasonable Argon2 costs",
                fix="restore the file from a good copy",
            )
        kek = self._kek(_unb64(stanza.get("salt")), t, m, p)
        try:
            return AESGCM(kek).decrypt(b"\0" * 12, _unb64(stanza.get("wrapped")), _DEK_INFO)
        except InvalidTag as exc:
            raise WrongPassphraseError(
                "wrong passphrase for this file", fix="give the passphrase it was encrypted with"
            ) from exc


@dataclass(frozen=True)
class Envelope:
    """One artifact's data key and its wrapped copies (shared by every file of a directory)."""

    data_key: bytes
    stanzas: tuple[dict[str, Any], ...]

    @classmethod
    def new(cls, wrappers: Sequence[KeyWrapper]) -> Envelope:
        if not wrappers:
            raise UsageError(
                "no recipient and no passphrase", fix="pass --recipient PUBLIC_KEY or --passphrase"
            )
        data_key = secrets.token_bytes(32)
        return cls(data_key, tuple(w.wrap(data_key) for w in wrappers))


def _segment_cipher(data_key: bytes, file_id: bytes) -> Any:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM
    from cryptography.hazmat.primitives.kdf.hkdf import HKDF

    return AESGCM(HKDF(hashes.SHA256(), 32, salt=file_id, info=_SEGMENT_INFO).derive(data_key))


def _fill(src: BinaryIO, buf: bytearray) -> int:
    """Read until `buf` is full or the stream ends (raw reads may return short)."""
    view, total = memoryview(buf), 0
    while total < len(buf):
        got = src.readinto(view[total:])  # type: ignore[attr-defined]
        if not got:
            break
        total += got
    return total


def _nonce(index: int, final: bool) -> bytes:
    return index.to_bytes(11, "big") + (b"\x01" if final else b"\x00")


def _header_bytes(envelope: Envelope, file_id: bytes, segment: int) -> bytes:
    header = {
        "version": 1,
        "cipher": CIPHER,
        "segment_size": segment,
        "file_id": file_id.hex(),
        "stanzas": list(envelope.stanzas),
    }
    body = json.dumps(header, sort_keys=True, separators=(",", ":")).encode()
    return MAGIC + struct.pack(">I", len(body)) + body


def encrypt_stream(
    src: BinaryIO,
    dst: BinaryIO,
    envelope: Envelope,
    file_id: bytes | None = None,
    segment: int = DEFAULT_SEGMENT,
) -> bytes:
    """Encrypt `src` to `dst` in constant memory; returns the file id."""
    if not MIN_SEGMENT <= segment <= MAX_SEGMENT:
        raise UsageError(
            f"segment size {segment} out of range", fix=f"use {MIN_SEGMENT}..{MAX_SEGMENT} bytes"
        )
    fid = file_id or secrets.token_bytes(16)
    header = _header_bytes(envelope, fid, segment)
    aad = hashlib.sha256(header).digest()
    cipher = _segment_cipher(envelope.data_key, fid)
    dst.write(header)
    bufs = [bytearray(segment), bytearray(segment)]
    out = bytearray(segment + TAG)
    cur = 0
    got = _fill(src, bufs[cur])
    index = 0
    while True:
        nxt = _fill(src, bufs[1 - cur]) if got == segment else 0
        final = nxt == 0
        view = memoryview(out)[: got + TAG]
        cipher.encrypt_into(_nonce(index, final), memoryview(bufs[cur])[:got], aad, view)
        dst.write(view)
        if final:
            return fid
        index, cur, got = index + 1, 1 - cur, nxt


@dataclass(frozen=True)
class Header:
    """A parsed file header."""

    raw: bytes
    segment: int
    file_id: bytes
    stanzas: tuple[Mapping[str, Any], ...]


def _bad(what: str) -> DecryptionError:
    return DecryptionError(
        f"not a valid Bastion encrypted file: {what}", fix="restore the file from a good copy"
    )


def read_header(src: BinaryIO) -> Header:
    """Parse the header without unwrapping anything."""
    lead = src.read(len(MAGIC) + 4)
    if lead[: len(MAGIC)] != MAGIC:
        raise InputError(
            "not a Bastion encrypted file", fix="pass a file written by `bastion encrypt`"
        )
    if len(lead) < len(MAGIC) + 4:
        raise _bad("truncated header")
    (length,) = struct.unpack(">I", lead[len(MAGIC) :])
    if length > MAX_HEADER:
        raise _bad("header too large")
    body = src.read(length)
    if len(body) != length:
        raise _bad("truncated header")
    try:
        doc = json.loads(body)
        segment, file_id, stanzas = (
            doc["segment_size"],
            bytes.fromhex(doc["file_id"]),
            doc["stanzas"],
        )
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise _bad("unreadable header") from exc
    if doc.get("version") != 1 or doc.get("cipher") != CIPHER:
        raise _bad("unknown version or cipher")
    if (
        not isinstance(segment, int)
        or not MIN_SEGMENT <= segment <= MAX_SEGMENT
        or len(file_id) != 16
    ):
        raise _bad("bad segment size or file id")
    if not isinstance(stanzas, list) or not all(isinstance(s, dict) for s in stanzas):
        raise _bad("bad key stanzas")
    return Header(lead + body, segment, file_id, tuple(stanzas))


def unwrap(header: Header, keys: Sequence[KeyWrapper]) -> bytes:
    """The data key, from the first stanza one of `keys` can open."""
    if not keys:
        raise UsageError("no decryption key", fix="pass --key PRIVATE_KEY or --passphrase")
    for stanza in header.stanzas:
        for key in keys:
            data_key = key.unwrap(stanza)
            if data_key is not None:
                if len(data_key) != 32:
                    raise _bad("wrapped data key has the wrong length")
                return data_key
    kinds = ", ".join(sorted({str(s.get("type")) for s in header.stanzas})) or "nobody"
    raise NoMatchingKeyError(
        f"none of the keys given can open this file (it is encrypted for: {kinds})",
        fix="pass the recipient private key or the passphrase it was encrypted with",
    )


def decrypt_stream(
    src: BinaryIO, dst: BinaryIO, keys: Sequence[KeyWrapper], data_key: bytes | None = None
) -> Header:
    """Decrypt `src` to `dst`; raises if any segment fails (the caller discards `dst`)."""
    from cryptography.exceptions import InvalidTag

    header = read_header(src)
    cipher = _segment_cipher(data_key or unwrap(header, keys), header.file_id)
    aad = hashlib.sha256(header.raw).digest()
    size = header.segment + TAG
    bufs = [bytearray(size), bytearray(size)]
    out = bytearray(header.segment)
    cur = 0
    got = _fill(src, bufs[cur])
    index = 0
    while True:
        if got < TAG:
            raise DecryptionError(
                "the file is truncated: a segment is missing its end",
                fix="restore the file from a good copy",
            )
        nxt = _fill(src, bufs[1 - cur]) if got == size else 0
        final = nxt == 0
        data = memoryview(bufs[cur])[:got]
        view = memoryview(out)[: got - TAG]
        try:
            cipher.decrypt_into(_nonce(index, final), data, aad, view)
        except InvalidTag as exc:
            raise _segment_failure(cipher, index, final, data, aad) from exc
        dst.write(view)
        if final:
            return header
        index, cur, got = index + 1, 1 - cur, nxt


def _segment_failure(
    cipher: Any, index: int, final: bool, data: memoryview, aad: bytes
) -> DecryptionError:
    from cryptography.exceptions import InvalidTag

    if final:
        try:
            cipher.decrypt(_nonce(index, False), bytes(data), aad)
        except InvalidTag:
            pass
        else:
            return DecryptionError(
                "the file is truncated: its final segment is missing",
                fix="restore the file from a good copy",
            )
    return DecryptionError(
        f"segment {index} failed to authenticate (altered, reordered or spliced ciphertext)",
        fix="restore the file from a good copy; nothing was written",
    )


def is_encrypted(path: Path) -> bool:
    """Whether `path` is an encrypted file or an encrypted directory."""
    if path.is_dir():
        return (path / DIR_MANIFEST).is_file()
    try:
        with path.open("rb") as handle:
            return handle.read(len(MAGIC)) == MAGIC
    except OSError:
        return False


def _open_read(path: Path) -> BinaryIO:
    try:
        return path.open("rb", buffering=0)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}", fix="check the path") from exc


def encrypt_file(
    src: Path,
    dst: Path,
    envelope: Envelope,
    file_id: bytes | None = None,
    segment: int = DEFAULT_SEGMENT,
) -> bytes:
    """Encrypt one file; `dst` appears only when complete."""
    with _open_read(src) as reader, atomic_file(dst, "wb") as writer:
        return encrypt_stream(reader, writer, envelope, file_id, segment)  # type: ignore[arg-type]


def decrypt_file(src: Path, dst: Path, keys: Sequence[KeyWrapper]) -> None:
    """Decrypt one file; `dst` appears only if every segment authenticated."""
    with _open_read(src) as reader, atomic_file(dst, "wb") as writer:
        decrypt_stream(reader, writer, keys)  # type: ignore[arg-type]


def decrypt_bytes(src: Path, keys: Sequence[KeyWrapper]) -> bytes:
    """Decrypt one file into memory."""
    buffer = io.BytesIO()
    with _open_read(src) as reader:
        decrypt_stream(reader, buffer, keys)
    return buffer.getvalue()


def encrypt_path(src: Path, dst: Path, wrappers: Sequence[KeyWrapper]) -> Path:
    """Encrypt a file, or a directory file by file with an encrypted manifest of names."""
    from bastion.integrity.manifest import file_path, list_files

    envelope = Envelope.new(wrappers)
    if not src.is_dir():
        encrypt_file(src, dst, envelope)
        return dst
    entries = []
    with atomic_directory(dst) as tmp:
        (tmp / OBJECTS).mkdir()
        for entry in list_files(src):
            file_id = secrets.token_bytes(16)
            encrypt_file(
                file_path(src, entry.name),
                tmp / OBJECTS / f"{file_id.hex()}.enc",
                envelope,
                file_id,
            )
            entries.append({"name": entry.name, "file_id": file_id.hex(), "size": entry.size})
        listing = json.dumps({"files": entries}).encode()
        with atomic_file(tmp / DIR_MANIFEST, "wb") as writer:
            encrypt_stream(io.BytesIO(listing), writer, envelope)  # type: ignore[arg-type]
    return dst


def _directory_listing(src: Path, keys: Sequence[KeyWrapper]) -> tuple[bytes, list[dict[str, Any]]]:
    from bastion.integrity.manifest import check_name

    buffer = io.BytesIO()
    with _open_read(src / DIR_MANIFEST) as reader:
        header = read_header(reader)
        data_key = unwrap(header, keys)
        reader.seek(0)
        decrypt_stream(reader, buffer, keys, data_key)
    try:
        files = json.loads(buffer.getvalue())["files"]
        for item in files:
            if check_name(item["name"]) == ".":
                raise ValueError("a directory entry cannot be the directory itself")
            bytes.fromhex(item["file_id"])
    except (ValueError, KeyError, TypeError) as exc:
        raise _bad("unreadable directory manifest") from exc
    listed = {f"{item['file_id']}.enc" for item in files}
    present = {p.name for p in (src / OBJECTS).iterdir()} if (src / OBJECTS).is_dir() else set()
    if present - listed:
        raise DecryptionError(
            f"objects not in the manifest: {', '.join(sorted(present - listed))}",
            fix="restore the directory from a good copy",
        )
    return data_key, files


def decrypt_path(src: Path, dst: Path, keys: Sequence[KeyWrapper]) -> Path:
    """Decrypt what `encrypt_path` wrote; the output appears only if everything authenticated."""
    if not src.is_dir():
        decrypt_file(src, dst, keys)
        return dst
    data_key, files = _directory_listing(src, keys)
    with atomic_directory(dst) as tmp:
        for item in files:
            obj = src / OBJECTS / f"{item['file_id']}.enc"
            if not obj.is_file():
                raise DecryptionError(
                    f"{item['name']} is missing (object {obj.name})",
                    fix="restore the directory from a good copy",
                )
            target = tmp.joinpath(*item["name"].split("/"))
            target.parent.mkdir(parents=True, exist_ok=True)
            with _open_read(obj) as reader, target.open("wb") as writer:
                header = decrypt_stream(reader, writer, keys, data_key)
            if header.file_id.hex() != item["file_id"]:
                raise DecryptionError(
                    f"{item['name']} was swapped with another file",
                    fix="restore the directory from a good copy",
                )
    return dst


def default_output(src: Path, encrypting: bool) -> Path:
    """`X.enc` when encrypting; `X` without `.enc` when decrypting."""
    if encrypting:
        return src.with_name(src.name + ".enc")
    if src.suffix != ".enc":
        raise UsageError(f"cannot guess the output name for {src.name}", fix="pass --out")
    return src.with_suffix("")
