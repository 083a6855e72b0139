"""Walks paths, recognises each file by content and hands it to the matching scanner."""

from __future__ import annotations

import mmap
import os
import stat
from collections.abc import Iterator, Sequence

from bastion.integrity.scan.context import Context
from bastion.integrity.scan.limits import Deadline, LimitExceeded, Limits
from bastion.integrity.scan.pickle_vm import TORCH_LEGACY_MAGIC, ParseError, PickleMachine
from bastion.integrity.scan.policy import Policy
from bastion.integrity.scan.report import FileResult, ScanReport
from bastion.integrity.scan.sniff import sniff

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_RELEASE_STEP = 32 << 20


def scan_paths(
    paths: Sequence[str | os.PathLike[str]], policy: Policy, limits: Limits | None = None
) -> ScanReport:
    """One FileResult per regular file under `paths` (directories are walked recursively).

    Paths are handled as strings (`os.path`), not `pathlib`, which would add milliseconds
    to every `bastion scan`; each is named as `str(pathlib.Path(p))` would name it.
    """
    limits = limits or Limits()
    report = ScanReport(policy=policy.name)
    for given in paths:
        root = _normalise(os.fspath(given))
        if not os.path.lexists(root):
            report.files.append(_missing(root))
            continue
        for file in _walk(root):
            report.files.append(scan_file(file, root, policy, limits))
    return report


def _normalise(path: str) -> str:
    """`str(pathlib.PurePosixPath(path))`: no empty or "." segments, no trailing slash."""
    root = "//" if path[:2] == "//" and path[:3] != "///" else "/" if path[:1] == "/" else ""
    return root + "/".join(part for part in path.split("/") if part and part != ".") or "."


def _missing(root: str) -> FileResult:
    result = FileResult(root, "missing")
    result.findings.append(_finding("scan.missing", "no such file or directory", root))
    return result


def _finding(rule: str, message: str, where: str) -> Any:
    from bastion.integrity.scan.report import ScanFinding

    return ScanFinding(rule, "high", message, where, None, "error")


def _walk(root: str) -> Iterator[str]:
    if not os.path.isdir(root) or os.path.islink(root):
        yield root
        return
    for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
        dirnames.sort()
        for name in sorted(filenames):
            yield _normalise(os.path.join(dirpath, name))
        for name in dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                yield _normalise(os.path.join(dirpath, name))


def scan_file(path: str, root: str, policy: Policy, limits: Limits) -> FileResult:
    """Scan one file; every failure becomes a finding, never an exception."""
    ctx = Context(
        policy=policy, limits=limits, deadline=Deadline(limits.max_seconds), nested=scan_nested
    )
    where = path
    fmt = "unknown"
    if os.path.islink(path):
        _check_symlink(path, root, ctx)
    try:
        info = os.stat(path)
        size = info.st_size
        if stat.S_ISDIR(info.st_mode):
            return FileResult(where, "symlink", ctx.findings)
        if not stat.S_ISREG(info.st_mode):
            ctx.add(
                "format.special",
                "medium",
                "not a regular file (device, FIFO or socket)",
                where,
                None,
                "error",
            )
            return FileResult(where, "special", ctx.findings)
        if size == 0:
            ctx.add("format.empty", "medium", "zero-byte file: not a model", where, None, "error")
            return FileResult(where, "empty", ctx.findings)
        with (
            open(path, "rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm,
        ):
            fmt = scan_blob(mm, 0, size, where, ctx, top=True, mm=mm)
    except LimitExceeded as exc:
        ctx.add(exc.rule, "high", exc.message, where, None, "suspicious")
    except OSError as exc:
        ctx.add(
            "scan.unreadable",
            "high",
            f"cannot read file: {exc.strerror or exc}",
            where,
            None,
            "error",
        )
    except Exception as exc:  # a scanner bug must never report a file as safe
        ctx.add(
            "scan.internal",
            "high",
            f"scanner failed: {type(exc).__name__}: {exc}",
            where,
            None,
            "error",
        )
    return FileResult(where, fmt, ctx.findings, ctx.imports)


def scan_data(
    data: bytes, policy: Policy, limits: Limits | None = None, name: str = "<bytes>"
) -> FileResult:
    """Scan an in-memory file (for callers that hold the bytes); never raises."""
    limits = limits or Limits()
    ctx = Context(
        policy=policy, limits=limits, deadline=Deadline(limits.max_seconds), nested=scan_nested
    )
    fmt = "unknown"
    if not data:
        ctx.add("format.empty", "medium", "zero-byte file: not a model", name, None, "error")
        return FileResult(name, "empty", ctx.findings)
    try:
        fmt = scan_blob(data, 0, len(data), name, ctx, top=True)
    except LimitExceeded as exc:
        ctx.add(exc.rule, "high", exc.message, name, None, "suspicious")
    except Exception as exc:  # a scanner bug must never report data as safe
        ctx.add(
            "scan.internal",
            "high",
            f"scanner failed: {type(exc).__name__}: {exc}",
            name,
            None,
            "error",
        )
    return FileResult(name, fmt, ctx.findings, ctx.imports)


def _check_symlink(path: str, root: str, ctx: Context) -> None:
    target = os.path.realpath(path)
    base = os.path.realpath(root if os.path.isdir(root) else os.path.dirname(root) or ".")
    if target != base and not target.startswith(base.rstrip("/") + "/"):
        ctx.add(
            "path.symlink",
            "high",
            f"symlink points outside the scanned tree, to {target}",
            str(path),
            None,
            "malicious",
        )


def scan_nested(payload: bytes, where: str, ctx: Context) -> None:
    """Scan bytes handed to a loader inside a pickle as a file of their own."""
    ctx.deeper()
    try:
        scan_blob(payload, 0, len(payload), where, ctx, top=False, name="<loader>")
    finally:
        ctx.shallower()


def scan_blob(
    data: Any,
    start: int,
    end: int,
    where: str,
    ctx: Context,
    *,
    top: bool,
    mm: Any = None,
    name: str = "",
) -> str:
    """Recognise `data[start:end]` by content, scan it, and return the format name."""
    ctx.deadline.check()
    kind = sniff(data, start, end, top=top)
    if kind in ("pickle", "unknown"):
        if not top and name and not name.endswith(_PICKLE_NAMES):
            return _tentative_pickle(data, start, end, where, ctx)
        # a whole file, a loader's argument, or decompressed output (no member name: a
        # compressed pickle is what joblib writes, and loaders accept it under any name)
        strict = kind == "pickle" or name == "<loader>"
        fmt = scan_pickle_region(data, start, end, where, ctx, strict=strict, mm=mm)
        if fmt == "unknown" and (top or not name):
            _unknown(data, start, end, where, ctx)
        return fmt
    from bastion.integrity.scan import formats

    formats.HANDLERS[kind](data, start, end, where, ctx)
    if kind == "zip" and bytes(data[start : start + 2]) != b"PK":
        # a zip found by its end record only: loaders that read from the start see this prefix
        scan_pickle_region(data, start, end, f"{where}@prefix", ctx, strict=False)
    return kind


_PICKLE_NAMES = (".pkl", ".pickle", "<loader>")
# every opcode of protocols 0-5 (`pickletools.opcodes`, spelled out: importing pickletools
# costs `bastion scan` milliseconds); CPython accepts any of them first, so any may open a pickle
_OPCODES = frozenset(
    b"().012BCFGIJKLMNPQRSTUVX]abcdeghijlopqrstu}"
    b"\x80\x81\x82\x83\x84\x85\x86\x87\x88\x89\x8a\x8b\x8c\x8d\x8e"
    b"\x8f\x90\x91\x92\x93\x94\x95\x96\x97\x98"
)


def _tentative_pickle(data: Any, start: int, end: int, where: str, ctx: Context) -> str:
    """An archive member that may be raw data (tensor storage) or a pickle under any name.

    Its findings count if its first byte is an opcode and the pass imported or called
    anything: CPython runs a REDUCE before it notices a missing STOP, so a stream cut
    short still acts.
    """
    if start >= end or data[start] not in _OPCODES:
        return "unknown"
    mark, seen, imports = len(ctx.findings), set(ctx._seen), dict(ctx.imports)
    fmt = scan_pickle_region(data, start, end, where, ctx, strict=False)
    if fmt == "unknown":
        del ctx.findings[mark:]
        ctx._seen, ctx.imports = seen, imports
    return fmt


def _unknown(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Text is inert; binary content we cannot recognise is reported as unscannable."""
    head = bytes(data[start : min(end, start + 4096)])
    try:
        head.decode("utf-8")
        is_text = b"\x00" not in head
    except UnicodeDecodeError as exc:
        is_text = exc.start > len(head) - 4 and b"\x00" not in head
    if is_text:
        ctx.add(
            "format.text",
            "info",
            "plain text, not a model format; nothing in it runs on load",
            where,
            None,
            "none",
        )
    else:
        ctx.add(
            "format.unknown",
            "medium",
            "content matches no model or archive format; it could not be scanned",
            where,
            None,
            "error",
        )


def scan_pickle_region(
    data: Any,
    start: int,
    end: int,
    where: str,
    ctx: Context,
    *,
    strict: bool,
    mm: Any = None,
) -> str:
    """Every pickle stream in the region, in order; findings before a parse error are kept.

    `strict` says the region is known to be a pickle (a parse error there means the file
    could not be fully scanned). Otherwise a region that fails before importing or
    calling anything is simply not a pickle.
    """
    machine = PickleMachine(data, start, end, ctx, where)
    if mm is not None:
        machine.release = _releaser(mm)
    streams = 0
    legacy = False
    fmt = "pickle"
    while machine.pos < end:
        stream_start = machine.pos
        before = (machine.imports, machine.calls)
        try:
            value = machine.run_stream()
        except ParseError as exc:
            acted = (machine.imports, machine.calls) != before
            if streams == 0 and not acted and not strict:
                return "unknown"
            if streams == 0 or acted:
                ctx.add(
                    "pickle.parse_error",
                    "medium",
                    f"pickle stream {streams + 1} is malformed at offset {exc.pos}: {exc}; "
                    "CPython stops there too",
                    f"{where}@{exc.pos}",
                    None,
                    "error" if streams == 0 else "suspicious",
                )
            else:
                ctx.add(
                    "pickle.trailing_data",
                    "info",
                    f"{end - stream_start} bytes after the last pickle stream are not a pickle",
                    f"{where}@{stream_start}",
                    None,
                    "none",
                )
            break
        streams += 1
        if streams == 1 and value == TORCH_LEGACY_MAGIC and isinstance(value, int):
            legacy, fmt = True, "pytorch-legacy"
        if legacy and streams == 5:
            break  # raw storage bytes follow the five pickles of the legacy format
        if streams >= ctx.limits.max_streams:
            raise LimitExceeded(
                "limit.streams", f"more than {ctx.limits.max_streams} concatenated pickle streams"
            )
    if streams > 1 and not legacy:
        ctx.add(
            "pickle.concatenated",
            "low",
            f"{streams} concatenated pickle streams; all were scanned",
            where,
            None,
            "none",
        )
    return fmt


def _releaser(mm: Any) -> Any:
    """Drop already-scanned pages of a mapped file so resident memory stays flat."""
    state = {"done": 0}

    def release(pos: int) -> None:
        upto = (pos // mmap.PAGESIZE) * mmap.PAGESIZE
        if upto - state["done"] >= _RELEASE_STEP and hasattr(mm, "madvise"):
            import contextlib  # here, not at start-up: only files over 32 MiB get here

            with contextlib.suppress(OSError, ValueError):
                mm.madvise(mmap.MADV_DONTNEED, state["done"], upto - state["done"])
            state["done"] = upto

    return release
