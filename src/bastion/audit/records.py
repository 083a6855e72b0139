"""Audit records: validation and the canonical JSON bytes that get hashed.

A record is a flat-ish JSON object the gateway builds (time, tenant, key id, model,
variant, input digest, output digest, decision, latency). It must never hold a secret,
so fields named like credentials are refused outright rather than redacted: a log that
silently rewrote records could no longer be trusted to hold what was sent.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from bastion.audit.errors import AuditRecordError

SEQ_FIELD = "seq"
MAX_RECORD_BYTES = 64 * 1024
MAX_DEPTH = 8

SECRET_NAME = re.compile(
    r"(^|[_\-.])(secret|secrets|password|passwd|passphrase|pwd|token|api[_\-]?key|private[_\-]?key|"
    r"authorization|cookie|credential|credentials|totp|otp|mfa[_\-]?code|signing[_\-]?key)($|[_\-.])",
    re.IGNORECASE,
)


def canonical_json(value: Mapping[str, Any]) -> bytes:
    """Sorted keys, no whitespace, UTF-8, no NaN/Infinity: one byte string per record."""
    return json.dumps(
        value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False
    ).encode()


@lru_cache(maxsize=4096)
def _secret_like(name: str) -> bool:
    """Whether a field name looks like a credential (cached: records reuse few names)."""
    return SECRET_NAME.search(name) is not None


_SCALARS = (str, int, float, bool, type(None))


def _check_names(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AuditRecordError(
            f"audit record nests deeper than {MAX_DEPTH} levels at {where}", fix="flatten it"
        )
    if type(value) in _SCALARS:
        return  # the common case, without the slower abstract-type checks below
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditRecordError(
                    f"audit record key {key!r} at {where} is not a string", fix="use string keys"
                )
            if _secret_like(key):
                raise AuditRecordError(
                    f"audit record field {where}{key!r} looks like a secret",
                    fix="log a digest or an id (e.g. key_id), never the secret itself",
                )
            if depth >= MAX_DEPTH or type(item) not in _SCALARS:
                _check_names(item, f"{where}{key}.", depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_names(item, where, depth + 1)


@dataclass(frozen=True)
class Prepared:
    """A validated record as canonical JSON members, split where the log's `seq` goes.

    `head` holds the members whose names sort before "seq", `tail` those after, each
    comma-joined exactly as `canonical_json` writes them, so the stored bytes of leaf
    `index` are assembled without serializing the record again.
    """

    head: bytes
    tail: bytes

    def with_seq(self, index: int) -> bytes:
        seq = b'"' + SEQ_FIELD.encode() + b'":' + str(int(index)).encode()
        return b"{" + b",".join(p for p in (self.head, seq, self.tail) if p) + b"}"


def prepare(record: Mapping[str, Any]) -> Prepared:
    """Validate `record` and serialize it once (what will be stored, minus `seq`)."""
    if not isinstance(record, Mapping):
        raise AuditRecordError(
            f"an audit record must be a JSON object, not {type(record).__name__}", fix="pass a dict"
        )
    if SEQ_FIELD in record:
        raise AuditRecordError(
            f"the field {SEQ_FIELD!r} is reserved for the log", fix="rename that field"
        )
    _check_names(record, "", 0)
    before = {k: v for k, v in record.items() if k < SEQ_FIELD}
    after = {k: v for k, v in record.items() if k > SEQ_FIELD}
    try:
        head, tail = canonical_json(before)[1:-1], canonical_json(after)[1:-1]
    except (TypeError, ValueError) as exc:
        raise AuditRecordError(
            f"audit record is not plain JSON: {exc}", fix="use str, number, bool, list, dict, None"
        ) from exc
    size = len(head) + len(tail) + (3 if head and tail else 2)
    if size > MAX_RECORD_BYTES:
        raise AuditRecordError(
            f"audit record is {size} bytes (limit {MAX_RECORD_BYTES})",
            fix="log digests, not payloads",
        )
    return Prepared(head, tail)


def with_seq(record: Mapping[str, Any] | Prepared, index: int) -> bytes:
    """The canonical bytes stored for leaf `index`: the record plus its own position."""
    if isinstance(record, Prepared):
        return record.with_seq(index)
    return canonical_json({**record, SEQ_FIELD: index})
