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


def _check_names(value: Any, where: str, depth: int) -> None:
    if depth > MAX_DEPTH:
        raise AuditRecordError(
            f"audit record nests deeper than {MAX_DEPTH} levels at {where}", fix="flatten it"
        )
    if isinstance(value, Mapping):
        for key, item in value.items():
            if not isinstance(key, str):
                raise AuditRecordError(
                    f"audit record key {key!r} at {where} is not a string", fix="use string keys"
                )
            if SECRET_NAME.search(key):
                raise AuditRecordError(
                    f"audit record field {where}{key!r} looks like a secret",
                    fix="log a digest or an id (e.g. key_id), never the secret itself",
                )
            _check_names(item, f"{where}{key}.", depth + 1)
    elif isinstance(value, list | tuple):
        for item in value:
            _check_names(item, where, depth + 1)


def prepare(record: Mapping[str, Any]) -> dict[str, Any]:
    """Validate `record` and return a plain-JSON copy (what will be stored, minus `seq`)."""
    if not isinstance(record, Mapping):
        raise AuditRecordError(
            f"an audit record must be a JSON object, not {type(record).__name__}", fix="pass a dict"
        )
    if SEQ_FIELD in record:
        raise AuditRecordError(
            f"the field {SEQ_FIELD!r} is reserved for the log", fix="rename that field"
        )
    _check_names(record, "", 0)
    try:
        data = canonical_json(record)
    except (TypeError, ValueError) as exc:
        raise AuditRecordError(
            f"audit record is not plain JSON: {exc}", fix="use str, number, bool, list, dict, None"
        ) from exc
    if len(data) > MAX_RECORD_BYTES:
        raise AuditRecordError(
            f"audit record is {len(data)} bytes (limit {MAX_RECORD_BYTES})",
            fix="log digests, not payloads",
        )
    loaded: dict[str, Any] = json.loads(data)
    return loaded


def with_seq(record: Mapping[str, Any], index: int) -> bytes:
    """The canonical bytes stored for leaf `index`: the record plus its own position."""
    return canonical_json({**record, SEQ_FIELD: index})
