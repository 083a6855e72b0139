"""DSSE envelopes inside a Sigstore bundle v0.3, as OpenSSF model-signing writes for keys.

Signatures are over PAE(payloadType, payload). Each signature's `keyid` names its
algorithm for Bastion's extensions (`ed25519`, `ml-dsa-65`); ECDSA keeps model-signing's
empty keyid. Which algorithm verifies is decided by the trusted key, never by the bundle.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any

from bastion.core.errors import SecurityError
from bastion.integrity.keys import PrivateKey, PublicKey

PAYLOAD_TYPE = "application/vnd.in-toto+json"
BUNDLE_MEDIA_TYPE = "application/vnd.dev.sigstore.bundle.v0.3+json"
KEYIDS = {"ecdsa-p256": "", "ed25519": "ed25519", "ml-dsa-65": "ml-dsa-65"}
_HEX64 = re.compile("[0-9a-f]{64}")


class SignatureInvalidError(SecurityError):
    """A signature does not verify with the key offered."""


class WrongKeyError(SecurityError):
    """The signature was made by a key other than the ones trusted."""


class AlgorithmMismatchError(SecurityError):
    """The signature's algorithm is not the trusted key's algorithm."""


class IncompleteHybridError(SecurityError):
    """A hybrid signature lacks one of its two halves."""


class MalformedBundleError(SecurityError):
    """The signature file is not a readable bundle (truncated, edited, or another format)."""


@dataclass(frozen=True)
class Bundle:
    """The parts of a signature file Bastion reads."""

    payload: bytes
    payload_type: str
    signatures: tuple[tuple[str, bytes], ...]  # (keyid, signature)
    hint: str


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1 pre-authentication encoding."""
    return b"DSSEv1 %d %s %d %s" % (len(payload_type), payload_type.encode(), len(payload), payload)


def _halves(key: PrivateKey | PublicKey) -> list[tuple[str, Any]]:
    if key.algorithm == "hybrid":
        return [("ed25519", key.parts[0]), ("ml-dsa-65", key.parts[1])]
    return [(key.algorithm, key.parts[0])]


def sign(payload: bytes, key: PrivateKey) -> bytes:
    """A bundle JSON signing `payload` with `key`."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    message = pae(PAYLOAD_TYPE, payload)
    signatures = []
    for algorithm, part in _halves(key):
        raw = (
            part.sign(message, ec.ECDSA(hashes.SHA256()))
            if algorithm == "ecdsa-p256"
            else part.sign(message)
        )
        signatures.append({"sig": base64.b64encode(raw).decode(), "keyid": KEYIDS[algorithm]})
    bundle = {
        "mediaType": BUNDLE_MEDIA_TYPE,
        "verificationMaterial": {"publicKey": {"hint": key.public().hint}, "tlogEntries": []},
        "dsseEnvelope": {
            "payload": base64.b64encode(payload).decode(),
            "payloadType": PAYLOAD_TYPE,
            "signatures": signatures,
        },
    }
    return json.dumps(bundle).encode()


def _malformed(what: str) -> MalformedBundleError:
    return MalformedBundleError(
        f"the signature file is not a valid bundle: {what}",
        fix="use the signature `bastion sign` or `model_signing sign key` wrote, untruncated",
    )


def _b64(value: Any) -> bytes:
    """Strict base64: valid alphabet and canonical (no ignored trailing bits)."""
    if not isinstance(value, str):
        raise TypeError("expected base64 text")
    raw = base64.b64decode(value, validate=True)
    if base64.b64encode(raw).decode() != value:
        raise binascii.Error("non-canonical base64")
    return raw


def _keys(obj: Any, expected: set[str], where: str) -> dict[str, Any]:
    if not isinstance(obj, dict) or set(obj) != expected:
        found = sorted(obj) if isinstance(obj, dict) else type(obj).__name__
        raise _malformed(f"{where} must have exactly {sorted(expected)}, found {found}")
    return obj


def parse(data: bytes) -> Bundle:
    """Read a bundle without verifying anything; every field is checked strictly.

    Only the DSSE payload is signed, so the unsigned fields around it must have
    exactly the expected shape: any edit to them is reported, not ignored.
    """
    try:
        doc = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _malformed("not JSON (truncated or edited?)") from exc
    doc = _keys(doc, {"mediaType", "verificationMaterial", "dsseEnvelope"}, "the bundle")
    if doc["mediaType"] != BUNDLE_MEDIA_TYPE:
        raise _malformed("unknown media type")
    material = _keys(
        doc["verificationMaterial"], {"publicKey", "tlogEntries"}, "verificationMaterial"
    )
    hint = _keys(material["publicKey"], {"hint"}, "publicKey")["hint"]
    if material["tlogEntries"] != [] or not isinstance(hint, str) or not _HEX64.fullmatch(hint):
        raise _malformed("unexpected transparency log entries or key hint")
    envelope = _keys(doc["dsseEnvelope"], {"payload", "payloadType", "signatures"}, "dsseEnvelope")
    if envelope["payloadType"] != PAYLOAD_TYPE:
        raise _malformed(f"payload type {envelope['payloadType']!r}")
    raw_sigs = envelope["signatures"]
    if not isinstance(raw_sigs, list) or not raw_sigs:
        raise _malformed("no signatures")
    try:
        payload = _b64(envelope["payload"])
        signatures = []
        for item in raw_sigs:
            entry = _keys(item, {"sig", "keyid"}, "a signature")
            if not isinstance(entry["keyid"], str):
                raise TypeError("keyid")
            signatures.append((entry["keyid"], _b64(entry["sig"])))
    except (TypeError, binascii.Error) as exc:
        raise _malformed("bad payload or signature encoding") from exc
    return Bundle(payload, PAYLOAD_TYPE, tuple(signatures), hint)


def _declared(bundle: Bundle) -> str:
    ids = {keyid for keyid, _ in bundle.signatures}
    if ids == {"ed25519", "ml-dsa-65"}:
        return "hybrid"
    by_id = {v: k for k, v in KEYIDS.items()}
    if len(ids) == 1 and next(iter(ids)) in by_id:
        return by_id[next(iter(ids))]
    return "+".join(sorted(ids)) or "unknown"


def verify(bundle: Bundle, key: PublicKey) -> None:
    """Check every signature `key`'s algorithm requires; raise a specific error otherwise."""
    from cryptography.exceptions import InvalidSignature
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec

    declared = _declared(bundle)
    by_id: dict[str, list[bytes]] = {}
    for keyid, sig in bundle.signatures:
        by_id.setdefault(keyid, []).append(sig)
    halves = _halves(key)
    if key.algorithm == "hybrid":
        missing = [alg for alg, _ in halves if KEYIDS[alg] not in by_id]
        if missing and declared in ("ed25519", "ml-dsa-65"):
            raise IncompleteHybridError(
                f"the hybrid signature is missing its {', '.join(missing)} half",
                fix="do not trust this model; re-sign it with the hybrid key",
            )
    if declared != key.algorithm:
        raise AlgorithmMismatchError(
            f"the signature is {declared} but the trusted key is {key.algorithm}",
            fix="verify with the key of the algorithm the model was signed with",
        )
    if bundle.hint != key.hint:
        raise WrongKeyError(
            f"the model was signed by another key (key hint {bundle.hint[:16]}…, "
            f"offered {key.hint[:16]}…)",
            fix="verify with the public key that matches the signing key",
        )
    message = pae(bundle.payload_type, bundle.payload)
    for algorithm, part in halves:
        sigs = by_id[KEYIDS[algorithm]]
        if len(sigs) != 1:
            raise SignatureInvalidError(
                f"{len(sigs)} {algorithm} signatures", fix="re-sign the model"
            )
        try:
            if algorithm == "ecdsa-p256":
                part.verify(sigs[0], message, ec.ECDSA(hashes.SHA256()))
            else:
                part.verify(sigs[0], message)
        except InvalidSignature as exc:
            raise SignatureInvalidError(
                f"the {algorithm} signature does not verify with {key.source or 'the trusted key'}",
                fix="the signature or its payload was altered; do not trust this model",
            ) from exc
