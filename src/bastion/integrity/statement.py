"""Manifest <-> in-toto Statement v1 with the model-signing v1.0 predicate.

The subject digest is SHA-256 over the resource digests in listed order (as in
`model_signing._signing.signing.Payload`). Bastion adds a `bastion` object to the
predicate (ignored by v1.0 verifiers): the signing algorithm, so a signature cannot be
re-labelled as another algorithm, and the full file list with sizes, which also covers
empty files that the `shards` method has no resource for.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from bastion.core.errors import SecurityError
from bastion.integrity.manifest import FileEntry, Manifest, Resource, Serialization, check_name

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://model_signing/signature/v1.0"
EXTENSION = "bastion"


class MalformedSignatureError(SecurityError):
    """The signed statement does not describe a model in the expected layout."""


def root_digest(resources: tuple[Resource, ...]) -> str:
    """SHA-256 over every resource digest, in order."""
    hasher = hashlib.sha256()
    for r in resources:
        hasher.update(r.digest)
    return hasher.hexdigest()


def to_payload(manifest: Manifest, algorithm: str) -> bytes:
    """The statement bytes that get signed."""
    statement = {
        "_type": STATEMENT_TYPE,
        "subject": [
            {"name": manifest.model_name, "digest": {"sha256": root_digest(manifest.resources)}}
        ],
        "predicateType": PREDICATE_TYPE,
        "predicate": {
            "serialization": manifest.serialization.as_dict(),
            "resources": [
                {"name": r.name, "algorithm": r.algorithm, "digest": r.digest.hex()}
                for r in manifest.resources
            ],
            EXTENSION: {
                "signature_algorithm": algorithm,
                "files": [{"name": f.name, "size": f.size} for f in manifest.files or ()],
            },
        },
    }
    return json.dumps(statement, indent=2, sort_keys=False).encode()


def _fail(what: str) -> MalformedSignatureError:
    return MalformedSignatureError(
        f"the signed statement is malformed: {what}", fix="re-sign the model with `bastion sign`"
    )


def _serialization(args: Any) -> Serialization:
    if not isinstance(args, dict):
        raise _fail("no serialization")
    method, hash_type = args.get("method"), args.get("hash_type")
    if method not in ("files", "shards") or hash_type not in ("sha256", "blake3"):
        raise _fail(f"unsupported serialization {method!r}/{hash_type!r}")
    if args.get("allow_symlinks") not in (False, None):
        raise _fail("symlinks were allowed when signing; Bastion refuses symlinks")
    shard_size = args.get("shard_size")
    if isinstance(shard_size, float) and shard_size.is_integer():
        shard_size = int(shard_size)  # model-signing writes numbers through protobuf Struct
    if method == "shards" and (
        not isinstance(shard_size, int) or isinstance(shard_size, bool) or shard_size <= 0
    ):
        raise _fail("bad shard_size")
    ignore = args.get("ignore_paths", [])
    if not isinstance(ignore, list) or not all(isinstance(p, str) for p in ignore):
        raise _fail("bad ignore_paths")
    return Serialization(
        method,
        hash_type,
        shard_size if method == "shards" else None,
        tuple(check_name(p) for p in ignore),
    )


def _resource(item: Any, serialization: Serialization) -> Resource:
    if not isinstance(item, dict) or not all(
        isinstance(item.get(k), str) for k in ("name", "algorithm", "digest")
    ):
        raise _fail("a resource lacks name, algorithm or digest")
    if item["algorithm"] != serialization.resource_algorithm:
        raise _fail(f"resource algorithm {item['algorithm']!r} does not match the serialization")
    try:
        digest = bytes.fromhex(item["digest"])
    except ValueError as exc:
        raise _fail("a digest is not hex") from exc
    name = item["name"]
    if serialization.method == "files":
        return Resource(check_name(name), -1, -1, item["algorithm"], digest)
    path, sep1, rest = name.rpartition(":")
    path, sep2, start_text = path.rpartition(":")
    try:
        start, end = int(start_text), int(rest)
    except ValueError as exc:
        raise _fail(f"bad shard name {name!r}") from exc
    if not (sep1 and sep2) or start < 0 or end <= start:
        raise _fail(f"bad shard name {name!r}")
    return Resource(check_name(path), start, end, item["algorithm"], digest)


def from_payload(payload: bytes) -> tuple[Manifest, str | None]:
    """Parse a verified payload into a manifest and the declared signing algorithm."""
    try:
        statement = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as exc:
        raise _fail("not JSON") from exc
    if not isinstance(statement, dict) or statement.get("_type") != STATEMENT_TYPE:
        raise _fail("not an in-toto Statement v1")
    if statement.get("predicateType") != PREDICATE_TYPE:
        raise _fail(f"predicate type {statement.get('predicateType')!r}")
    subjects = statement.get("subject")
    predicate = statement.get("predicate")
    if not isinstance(subjects, list) or len(subjects) != 1 or not isinstance(predicate, dict):
        raise _fail("expected one subject and a predicate")
    subject = subjects[0] if isinstance(subjects[0], dict) else {}
    serialization = _serialization(predicate.get("serialization"))
    raw = predicate.get("resources")
    if not isinstance(raw, list):
        raise _fail("no resources")
    resources = tuple(_resource(item, serialization) for item in raw)
    if len({r.name for r in resources}) != len(resources):
        raise _fail("a resource is listed twice")
    digest = subject.get("digest")
    if not isinstance(digest, dict) or digest.get("sha256") != root_digest(resources):
        raise _fail("the subject digest does not match the resources")
    algorithm, files = None, None
    extension = predicate.get(EXTENSION)
    if isinstance(extension, dict):
        algorithm = extension.get("signature_algorithm")
        listed = extension.get("files") or []
        if not isinstance(listed, list):
            raise _fail("the file list is not a list")
        files = tuple(_file(f) for f in listed)
        if len({f.name for f in files}) != len(files):
            raise _fail("a file is listed twice")
    name = subject.get("name")
    return Manifest(
        name if isinstance(name, str) else "", serialization, resources, files
    ), algorithm


def _file(item: Any) -> FileEntry:
    if not isinstance(item, dict) or not isinstance(item.get("name"), str):
        raise _fail("a file entry has no name")
    size = item.get("size")
    if not isinstance(size, int) or isinstance(size, bool) or size < 0:
        raise _fail("a file entry has a bad size")
    return FileEntry(check_name(item["name"]), size)
