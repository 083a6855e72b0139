"""Atomic writes: nothing half-written is ever visible under its final name."""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bastion.core.errors import OutputPathError


def _checked_parent(target: Path) -> Path:
    parent = target.parent
    try:
        parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputPathError(
            f"cannot create {parent}: {exc.strerror}", fix="choose a writable location"
        ) from exc
    if not os.access(parent, os.W_OK):
        raise OutputPathError(f"{parent} is not writable", fix="choose a writable location")
    return parent


@contextlib.contextmanager
def atomic_file(target: str | Path, mode: str = "wb") -> Iterator[object]:
    """Open a temporary file beside `target`; rename it over `target` only on success."""
    path = Path(target)
    parent = _checked_parent(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=parent)
    try:
        with os.fdopen(fd, mode) as handle:
            yield handle
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_bytes_atomic(target: str | Path, data: bytes) -> None:
    """Write `data` to `target` atomically."""
    with atomic_file(target, "wb") as handle:
        handle.write(data)  # type: ignore[attr-defined]


@contextlib.contextmanager
def atomic_directory(target: str | Path) -> Iterator[Path]:
    """Build a directory in a temporary sibling; replace `target` with it only on success."""
    path = Path(target)
    parent = _checked_parent(path)
    tmp = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".partial", dir=parent))
    try:
        yield tmp
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=parent))
            os.replace(path, old / "x")
            os.replace(tmp, path)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
