"""The manifest of a model: every file, its size, and the digests of its shards.

Layout follows OpenSSF model-signing v1.0 (`model_signing.manifest`): a serialization
description (`files` or `shards`, hash type, shard size, ignored paths) and resources
named `path` or `path:start:end`, so a manifest round-trips through both tools.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from bastion.core.errors import InputError, SecurityError
from bastion.integrity.hashing import HASH_TYPES, ByteRange, hash_files_blake3, hash_ranges

GIT_PATHS = (".git", ".gitattributes", ".github", ".gitignore")
DEFAULT_SHARD_SIZE = 64 << 20
SINGLE_FILE_NAME = "."


class UnsafePathError(SecurityError):
    """A manifest names a path outside the model directory."""


@dataclass(frozen=True)
class Serialization:
    """How a manifest was computed; verification recomputes it exactly this way."""

    method: str  # "files" or "shards"
    hash_type: str  # "sha256" or "blake3"
    shard_size: int | None = None
    ignore_paths: tuple[str, ...] = ()
    allow_symlinks: bool = False

    @property
    def resource_algorithm(self) -> str:
        """The `algorithm` each resource carries (model-signing names sharded digests)."""
        if self.method == "shards":
            return f"{self.hash_type}-sharded-{self.shard_size}"
        return self.hash_type

    def as_dict(self) -> dict[str, object]:
        """The `serialization` object of the signed predicate."""
        out: dict[str, object] = {"method": self.method, "hash_type": self.hash_type}
        if self.method == "shards":
            out["shard_size"] = self.shard_size
        out["allow_symlinks"] = self.allow_symlinks
        if self.ignore_paths:
            out["ignore_paths"] = list(self.ignore_paths)
        return out


@dataclass(frozen=True)
class FileEntry:
    """One regular file of the model: relative POSIX name and size in bytes."""

    name: str
    size: int


@dataclass(frozen=True)
class Resource:
    """One hashed item: a whole file (`files`) or one shard of it (`shards`)."""

    path: str
    start: int
    end: int  # -1 when a `files` resource is read from a foreign bundle (size unknown)
    algorithm: str
    digest: bytes

    @property
    def name(self) -> str:
        return (
            self.path if self.end < 0 or self.start < 0 else f"{self.path}:{self.start}:{self.end}"
        )


@dataclass(frozen=True)
class Manifest:
    """A model's signed content: serialization, resources, and (Bastion) the file list."""

    model_name: str
    serialization: Serialization
    resources: tuple[Resource, ...]
    files: tuple[FileEntry, ...] | None = None

    def paths(self) -> set[str]:
        """Every file the manifest covers."""
        if self.files is not None:
            return {f.name for f in self.files}
        return {r.path for r in self.resources}


@dataclass
class Diff:
    """What differs between a signed manifest and the files on disk."""

    changed: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (self.changed or self.missing or self.extra)

    def naming(self, model: Path) -> Diff:
        """This diff as a reader wants it: a single file's entry (".") by the file's name."""
        if not model.is_file():
            return self
        lists = (self.changed, self.missing, self.extra)
        return Diff(*([model.name if n == SINGLE_FILE_NAME else n for n in ns] for ns in lists))


def check_name(name: str) -> str:
    """Refuse names that could point outside the model directory."""
    if name == SINGLE_FILE_NAME:
        return name
    parts = name.split("/")
    if (
        not name
        or name.startswith("/")
        or "\\" in name
        or "\x00" in name
        or any(p in ("", ".", "..") for p in parts)
        or (len(name) > 1 and name[1] == ":")
    ):
        raise UnsafePathError(
            f"the signed manifest names {name!r}, a path outside the model directory",
            fix="do not trust this signature; re-sign the model from a clean copy",
        )
    return name


def _sort_key(name: str) -> tuple[str, ...]:
    # model-signing orders resources by PurePosixPath parts, not by plain string order
    return PurePosixPath(name).parts


def _is_ignored(name: str, ignore: Iterable[str]) -> bool:
    parts = PurePosixPath(name).parts
    for prefix in ignore:
        pp = PurePosixPath(prefix).parts
        if parts[: len(pp)] == pp:
            return True
    return False


def list_files(model: Path, ignore: Iterable[str] = ()) -> list[FileEntry]:
    """Every regular file under `model` (or the file itself), sorted; refuses symlinks."""
    ignored = tuple(ignore)
    try:
        mode = os.lstat(model).st_mode
    except FileNotFoundError as exc:
        raise InputError(f"no model at {model}", fix="pass an existing file or directory") from exc
    if stat.S_ISLNK(mode):
        raise SecurityError(f"{model} is a symlink", fix="sign or verify the real path, not a link")
    if stat.S_ISREG(mode):
        return [FileEntry(SINGLE_FILE_NAME, os.stat(model).st_size)]
    if not stat.S_ISDIR(mode):
        raise InputError(
            f"{model} is not a file or directory", fix="pass a model file or directory"
        )
    found: list[FileEntry] = []
    stack = [(model, "")]
    while stack:
        directory, prefix = stack.pop()
        with os.scandir(directory) as entries:
            for entry in entries:
                name = f"{prefix}{entry.name}"
                if _is_ignored(name, ignored):
                    continue
                st = entry.stat(follow_symlinks=False)
                if stat.S_ISLNK(st.st_mode):
                    raise SecurityError(
                        f"{name} is a symlink; symlinks are refused",
                        fix="replace the link with the file it points to, or remove it",
                    )
                if stat.S_ISDIR(st.st_mode):
                    stack.append((Path(entry.path), f"{name}/"))
                elif stat.S_ISREG(st.st_mode):
                    found.append(FileEntry(name, st.st_size))
                else:
                    raise InputError(
                        f"{name} is not a regular file", fix="remove it from the model directory"
                    )
    return sorted(found, key=lambda f: _sort_key(f.name))


def file_path(model: Path, name: str) -> Path:
    """The on-disk path of a manifest name."""
    return model if name == SINGLE_FILE_NAME else model.joinpath(*check_name(name).split("/"))


def plan_resources(
    files: Iterable[FileEntry], serialization: Serialization
) -> list[tuple[FileEntry, int, int]]:
    """The (file, start, end) items a serialization hashes, in canonical order."""
    items: list[tuple[FileEntry, int, int]] = []
    for entry in files:
        if serialization.method == "files":
            items.append((entry, 0, entry.size))
            continue
        size, step = entry.size, serialization.shard_size or DEFAULT_SHARD_SIZE
        items.extend((entry, start, min(start + step, size)) for start in range(0, size, step))
    return items


def hash_files(
    model: Path, files: list[FileEntry], serialization: Serialization, workers: int | None = None
) -> list[Resource]:
    """Hash `files` of `model` the way `serialization` says."""
    plan = plan_resources(files, serialization)
    paths = [file_path(model, entry.name) for entry, _, _ in plan]
    try:
        if serialization.hash_type == "blake3":
            digests = hash_files_blake3(paths)
        else:
            digests = hash_ranges(
                [ByteRange(p, s, e) for p, (_, s, e) in zip(paths, plan, strict=True)], workers
            )
    except OSError as exc:
        raise InputError(
            f"cannot read the model: {exc}", fix="make sure nothing writes to it"
        ) from exc
    algorithm = serialization.resource_algorithm
    sharded = serialization.method == "shards"
    return [
        Resource(entry.name, start if sharded else -1, end if sharded else -1, algorithm, digest)
        for (entry, start, end), digest in zip(plan, digests, strict=True)
    ]


def new_serialization(
    hash_type: str, shard_size: int | None = None, ignore_paths: Iterable[str] = ()
) -> Serialization:
    """The serialization Bastion signs with: sharded SHA-256, or whole-file BLAKE3.

    `shard_size=0` hashes whole files with SHA-256: the only layout the
    `model_signing verify key` CLI accepts (its Python API reads any layout).
    """
    if hash_type not in HASH_TYPES:
        raise InputError(f"unknown hash {hash_type!r}", fix=f"use one of {', '.join(HASH_TYPES)}")
    ignored = tuple(dict.fromkeys([*ignore_paths, *GIT_PATHS]))
    if hash_type == "blake3":
        return Serialization("files", "blake3", None, ignored)
    if shard_size == 0:
        return Serialization("files", "sha256", None, ignored)
    size = DEFAULT_SHARD_SIZE if shard_size is None else shard_size
    if size < 0:
        raise InputError(
            "shard size must not be negative",
            fix="pass --shard-size 0 (whole files) or a size in bytes",
        )
    return Serialization("shards", "sha256", size, ignored)


def build(model: Path, serialization: Serialization, workers: int | None = None) -> Manifest:
    """Hash a model into a manifest."""
    files = list_files(model, serialization.ignore_paths)
    resources = hash_files(model, files, serialization, workers)
    return Manifest(model_display_name(model), serialization, tuple(resources), tuple(files))


def model_display_name(model: Path) -> str:
    """The subject name: the model's final path component (informative only)."""
    return model.name or model.resolve().name


def compare(model: Path, expected: Manifest, workers: int | None = None) -> Diff:
    """Rehash `model` with the signed serialization and list changed, missing and extra files."""
    local = {f.name: f for f in list_files(model, expected.serialization.ignore_paths)}
    diff = Diff()
    wanted = expected.paths()
    # model-signing's `shards` layout has no resource for an empty file; without
    # Bastion's file list an empty file is covered by the layout, as model-signing does
    unlisted_empty_ok = expected.files is None and expected.serialization.method == "shards"
    diff.extra = sorted(
        n for n, f in local.items() if n not in wanted and not (unlisted_empty_ok and f.size == 0)
    )
    diff.missing = sorted(n for n in wanted if n not in local)
    sizes = {f.name: f.size for f in expected.files} if expected.files is not None else {}
    if expected.serialization.method == "shards":
        for r in expected.resources:
            sizes.setdefault(r.path, 0)
            sizes[r.path] = max(sizes[r.path], r.end)
    present = [local[n] for n in sorted(wanted, key=_sort_key) if n in local]
    changed = {f.name for f in present if f.name in sizes and sizes[f.name] != f.size}
    to_hash = [f for f in present if f.name not in changed]
    by_name: dict[str, list[Resource]] = {}
    for r in expected.resources:
        by_name.setdefault(r.path, []).append(r)
    actual: dict[str, list[Resource]] = {}
    for r in hash_files(model, to_hash, expected.serialization, workers):
        actual.setdefault(r.path, []).append(r)
    for entry in to_hash:
        signed = sorted(
            (r.start, r.end, r.algorithm, r.digest) for r in by_name.get(entry.name, [])
        )
        now = sorted((r.start, r.end, r.algorithm, r.digest) for r in actual.get(entry.name, []))
        if signed != now:
            changed.add(entry.name)
    diff.changed = sorted(changed)
    return diff
