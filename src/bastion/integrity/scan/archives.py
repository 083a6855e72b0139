"""Archives and compressed streams: zip (read leniently, like PyTorch), tar, gzip/bz2/xz/lzma.

Every member is recognised by its content and scanned under the archive's path,
named `archive!member`.
"""

from __future__ import annotations

import mmap
import struct
import zlib
from collections.abc import Callable

from bastion.integrity.scan.context import Context
from bastion.integrity.scan.limits import LimitExceeded

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_CHUNK = 1 << 16
_SPILL = 64 << 20  # decompressed output beyond this goes to a temporary file


def scan_member(data: Any, start: int, end: int, where: str, ctx: Context, name: str = "") -> str:
    """Scan an archive member (one level deeper) and return its format."""
    from bastion.integrity.scan.engine import scan_blob

    ctx.count_member()
    ctx.deeper()
    try:
        return scan_blob(data, start, end, where, ctx, top=False, name=name)
    finally:
        ctx.shallower()


def check_member_name(name: str, where: str, ctx: Context) -> None:
    """Archive members must not escape the extraction directory."""
    norm = name.replace("\\", "/")
    if norm.startswith("/") or (len(norm) > 1 and norm[1] == ":") or ".." in norm.split("/"):
        ctx.add(
            "archive.path_traversal",
            "critical",
            f"member name {name!r} escapes the extraction directory",
            where,
            None,
            "malicious",
        )


# ---- compressed streams ------------------------------------------------------------------
def _bz2() -> Any:
    import bz2

    return bz2.BZ2Decompressor()


def _lzma(fmt: str) -> Any:
    import lzma

    return lzma.LZMADecompressor(lzma.FORMAT_XZ if fmt == "xz" else lzma.FORMAT_ALONE)


_DECOMPRESSORS: dict[str, Callable[[], Any]] = {
    "gzip": lambda: zlib.decompressobj(31),
    "zlib": lambda: zlib.decompressobj(15),
    "bz2": _bz2,
    "xz": lambda: _lzma("xz"),
    "lzma": lambda: _lzma("lzma"),
    "deflate": lambda: zlib.decompressobj(-15),
}

_MULTISTREAM = {"gzip", "bz2", "xz"}


class Inflated:
    """Decompressed bytes, in memory or in a mapped temporary file; `complete` if no error."""

    def __init__(
        self, data: Any, size: int, complete: bool, error: str = "", file: Any = None
    ) -> None:
        self.data, self.size, self.complete, self.error, self._file = (
            data,
            size,
            complete,
            error,
            file,
        )

    def close(self) -> None:
        if self._file is not None:
            import contextlib  # here, not at start-up: only spilled output gets here

            with contextlib.suppress(Exception):
                self.data.close()
            self._file.close()


def inflate(kind: str, data: Any, start: int, end: int, ctx: Context) -> Inflated:
    """Decompress streaming with the size limit enforced; keep partial output on errors."""
    chunks: list[bytes] = []
    spill: Any = None
    total = 0
    error = ""
    dec = _DECOMPRESSORS[kind]()
    pos = start
    view = memoryview(data)
    try:
        while True:
            if dec.eof:
                rest = dec.unused_data
                if kind not in _MULTISTREAM or (not rest.strip(b"\x00") and pos >= end):
                    break
                dec = _DECOMPRESSORS[kind]()
                out = dec.decompress(rest)
            elif pos >= end:
                error = "compressed stream is truncated"
                break
            else:
                out = dec.decompress(view[pos : min(end, pos + _CHUNK)])
                pos += _CHUNK
            if out:
                total += len(out)
                ctx.count_decompressed(len(out))
                if spill is None and total > _SPILL:
                    import tempfile

                    spill = tempfile.TemporaryFile()  # noqa: SIM115 - closed by Inflated.close
                    spill.write(b"".join(chunks))
                    chunks = []
                if spill is not None:
                    spill.write(out)
                else:
                    chunks.append(out)
            ctx.deadline.check()
    except LimitExceeded:
        raise
    except Exception as exc:  # zlib.error, OSError, EOFError, lzma.LZMAError: all corrupt input
        error = f"corrupt compressed stream: {exc}"
    finally:
        view.release()
    if spill is None:
        return Inflated(b"".join(chunks), total, not error, error)
    spill.flush()
    mapped = mmap.mmap(spill.fileno(), 0, access=mmap.ACCESS_READ) if total else b""
    return Inflated(mapped, total, not error, error, spill)


def scan_compressed(kind: str) -> Callable[[Any, int, int, str, Context], None]:
    def handler(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
        out = inflate(kind, data, start, end, ctx)
        try:
            if out.error:
                ctx.add(
                    "archive.corrupt",
                    "medium",
                    f"{kind}: {out.error}; the {out.size} bytes recovered were scanned",
                    where,
                    None,
                    "error",
                )
            if out.size:
                scan_member(out.data, 0, out.size, f"{where}!{kind}", ctx)
        finally:
            out.close()

    return handler


def scan_unsupported(kind: str, fix: str) -> Callable[[Any, int, int, str, Context], None]:
    def handler(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
        ctx.add(
            "archive.unscannable",
            "high",
            f"{kind} archive cannot be scanned ({fix})",
            where,
            None,
            "error",
        )

    return handler


# ---- tar ---------------------------------------------------------------------------------
def scan_tar(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Walk tar headers directly (no extraction); regular members are scanned in place."""
    pos = start
    long_name = ""
    while pos + 512 <= end:
        header = bytes(data[pos : pos + 512])
        if header == b"\x00" * 512:
            break
        if header[257:262] != b"ustar" and not _tar_checksum_ok(header):
            ctx.add(
                "archive.corrupt",
                "medium",
                f"tar header at offset {pos - start} is invalid",
                where,
                None,
                "error",
            )
            return
        try:
            size = int(header[124:136].split(b"\x00", 1)[0].strip() or b"0", 8)
        except ValueError:
            ctx.add(
                "archive.corrupt",
                "medium",
                f"tar size field at offset {pos - start} is invalid",
                where,
                None,
                "error",
            )
            return
        kind = header[156:157]
        name = long_name or _tar_name(header)
        long_name = ""
        body = pos + 512
        if body + size > end:
            ctx.add(
                "archive.corrupt",
                "medium",
                f"tar member {name!r} is truncated",
                where,
                None,
                "error",
            )
            size = max(0, end - body)
        if kind in (b"L", b"x", b"g"):
            if kind == b"L":
                long_name = (
                    bytes(data[body : body + size]).split(b"\x00", 1)[0].decode("utf-8", "replace")
                )
            elif kind == b"x":
                long_name = _pax_path(bytes(data[body : body + size])) or ""
        else:
            check_member_name(name, f"{where}!{name}", ctx)
            if kind in (b"1", b"2"):
                link = header[157:257].split(b"\x00", 1)[0].decode("utf-8", "replace")
                check_member_name(link, f"{where}!{name}", ctx)
            elif kind in (b"0", b"\x00", b"7") and size:
                scan_member(data, body, body + size, f"{where}!{name}", ctx, name)
        pos = body + (size + 511) // 512 * 512


def _tar_name(header: bytes) -> str:
    name = header[0:100].split(b"\x00", 1)[0]
    prefix = header[345:500].split(b"\x00", 1)[0] if header[257:262] == b"ustar" else b""
    full = prefix + b"/" + name if prefix else name
    return full.decode("utf-8", "replace")


def _pax_path(body: bytes) -> str | None:
    for line in body.split(b"\n"):
        _, _, record = line.partition(b" ")
        key, _, value = record.partition(b"=")
        if key == b"path":
            return value.decode("utf-8", "replace")
    return None


def _tar_checksum_ok(header: bytes) -> bool:
    try:
        stored = int(header[148:156].split(b"\x00", 1)[0].strip() or b"-1", 8)
    except ValueError:
        return False
    return stored == sum(header[:148]) + 256 + sum(header[156:])


# ---- zip ---------------------------------------------------------------------------------
class _Entry:
    """One zip member as a central directory (or local header) describes it."""

    __slots__ = ("csize", "flags", "method", "name", "offset", "usize")

    def __init__(
        self, name: str, method: int, flags: int, csize: int, usize: int, offset: int
    ) -> None:
        self.name, self.method, self.flags = name, method, flags
        self.csize, self.usize, self.offset = csize, usize, offset


def scan_zip(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Central directory and local headers, both; flags and CRCs ignored like PyTorch's reader."""
    central, base = _central_directory(data, start, end, where, ctx)
    seen: set[int] = set()
    for entry in central:
        _scan_entry(data, start, end, base, entry, where, ctx, seen)
    # local headers the central directory does not list (hidden entries, or no directory at all)
    pos = start
    while pos + 30 <= end and bytes(data[pos : pos + 4]) == b"PK\x03\x04":
        local = _local(data, pos, end)
        if local is None:
            break
        lname, method, flags, csize, data_start = local
        if pos - base not in seen:
            if central:
                ctx.add(
                    "zip.hidden_entry",
                    "high",
                    f"local entry {lname!r} is not in the central directory",
                    f"{where}!{lname}",
                    None,
                    "suspicious",
                )
            if csize == 0 and flags & 8:
                break
            _scan_entry(
                data,
                start,
                end,
                base,
                _Entry(lname, method, flags, csize, csize if method == 0 else -1, pos - base),
                where,
                ctx,
                seen,
            )
        else:
            entry_size = next((e.csize for e in central if e.offset == pos - base), csize)
            csize = entry_size
        if flags & 8 and csize == 0:
            break
        pos = data_start + csize


def _central_directory(
    data: Any, start: int, end: int, where: str, ctx: Context
) -> tuple[list[_Entry], int]:
    tail_start = max(start, end - 65557)
    tail = bytes(data[tail_start:end])
    idx = tail.rfind(b"PK\x05\x06")
    if idx < 0 or idx + 22 > len(tail):
        if bytes(data[start : start + 4]) == b"PK\x03\x04":
            ctx.add(
                "zip.no_central_directory",
                "medium",
                "zip has no end-of-central-directory record (truncated?); "
                "local entries were scanned",
                where,
                None,
                "error",
            )
        return [], start
    eocd = tail_start + idx
    cd_size, cd_offset = struct.unpack_from("<II", tail, idx + 12)
    loc = eocd - 20
    if loc >= start and bytes(data[loc : loc + 4]) == b"PK\x06\x07":  # zip64 locator
        (z64,) = struct.unpack_from("<Q", bytes(data[loc + 8 : loc + 16]))
        z64 = loc - 56 if bytes(data[loc - 56 : loc - 52]) == b"PK\x06\x06" else start + z64
        if start <= z64 and z64 + 56 <= end and bytes(data[z64 : z64 + 4]) == b"PK\x06\x06":
            _, cd_size, cd_offset = struct.unpack_from("<QQQ", bytes(data[z64 + 32 : z64 + 56]))
            eocd = z64
    base = start + max(0, eocd - start - cd_size - cd_offset)  # bytes prepended to the archive
    entries: list[_Entry] = []
    pos = base + cd_offset
    while pos + 46 <= end and bytes(data[pos : pos + 4]) == b"PK\x01\x02":
        rec = bytes(data[pos : pos + 46])
        flags, method = struct.unpack_from("<HH", rec, 8)
        csize, usize = struct.unpack_from("<II", rec, 20)
        nlen, xlen, clen = struct.unpack_from("<HHH", rec, 28)
        (offset,) = struct.unpack_from("<I", rec, 42)
        name = bytes(data[pos + 46 : pos + 46 + nlen]).decode(
            "utf-8" if flags & 0x800 else "cp437", "replace"
        )
        extra = bytes(data[pos + 46 + nlen : pos + 46 + nlen + xlen])
        usize, csize, offset = _zip64(extra, usize, csize, offset)
        entries.append(_Entry(name, method, flags, csize, usize, offset))
        pos += 46 + nlen + xlen + clen
        if len(entries) > ctx.limits.max_members:
            break
    return entries, base


def _zip64(extra: bytes, usize: int, csize: int, offset: int) -> tuple[int, int, int]:
    i = 0
    while i + 4 <= len(extra):
        tag, size = struct.unpack_from("<HH", extra, i)
        if tag == 1:
            vals = list(struct.unpack_from(f"<{min(size // 8, 3)}Q", extra, i + 4))
            if usize == 0xFFFFFFFF and vals:
                usize = vals.pop(0)
            if csize == 0xFFFFFFFF and vals:
                csize = vals.pop(0)
            if offset == 0xFFFFFFFF and vals:
                offset = vals.pop(0)
        i += 4 + size
    return usize, csize, offset


def _local(data: Any, pos: int, end: int) -> tuple[str, int, int, int, int] | None:
    rec = bytes(data[pos : pos + 30])
    if len(rec) < 30:
        return None
    flags, method = struct.unpack_from("<HH", rec, 6)
    csize, usize = struct.unpack_from("<II", rec, 18)
    nlen, xlen = struct.unpack_from("<HH", rec, 26)
    name = bytes(data[pos + 30 : pos + 30 + nlen]).decode(
        "utf-8" if flags & 0x800 else "cp437", "replace"
    )
    extra = bytes(data[pos + 30 + nlen : pos + 30 + nlen + xlen])
    usize, csize, _ = _zip64(extra, usize, csize, 0)
    return name, method, flags, csize, pos + 30 + nlen + xlen


def _scan_entry(
    data: Any,
    start: int,
    end: int,
    base: int,
    entry: _Entry,
    where: str,
    ctx: Context,
    seen: set[int],
) -> None:
    label = f"{where}!{entry.name}"
    check_member_name(entry.name, label, ctx)
    local_pos = base + entry.offset
    local = (
        _local(data, local_pos, end)
        if bytes(data[local_pos : local_pos + 4]) == b"PK\x03\x04"
        else None
    )
    if local is None:
        ctx.add(
            "zip.bad_local_header",
            "medium",
            f"member {entry.name!r} has no local header at its offset",
            label,
            None,
            "error",
        )
        return
    seen.add(entry.offset)
    lname, _, _, _, data_start = local
    if lname != entry.name:
        check_member_name(lname, label, ctx)
        ctx.add(
            "zip.name_mismatch",
            "high",
            f"member is {entry.name!r} in the central directory but {lname!r} in its local "
            "header; scanned once, reported under both",
            f"{label} (local: {lname})",
            None,
            "suspicious",
        )
    data_end = min(end, data_start + entry.csize)
    if entry.name.endswith("/") and entry.csize == 0:
        return
    encrypted = bool(entry.flags & 1)
    if encrypted:
        # Ciphertext is random bytes: it can pass for JSON or a broken pickle, so a member
        # marked encrypted is never vouched for, whatever its bytes parse as. They are still
        # scanned as stored, in case the mark lies about a plaintext payload.
        ctx.add(
            "archive.encrypted",
            "high",
            f"member {entry.name!r} is password-protected and cannot be scanned",
            label,
            None,
            "error",
        )
    if entry.method == 0:
        scan_member(data, data_start, data_end, label, ctx, entry.name)
    elif entry.method == 8:
        out = inflate("deflate", data, data_start, data_end, ctx)
        try:
            if out.error and encrypted:
                return
            if out.error:
                ctx.add(
                    "archive.corrupt",
                    "medium",
                    f"member {entry.name!r}: {out.error}; recovered bytes were scanned",
                    label,
                    None,
                    "error",
                )
            if out.size:
                scan_member(out.data, 0, out.size, label, ctx, entry.name)
        finally:
            out.close()
    elif not encrypted:
        ctx.add(
            "archive.unscannable",
            "high",
            f"member {entry.name!r} uses compression method {entry.method} and cannot be scanned",
            label,
            None,
            "error",
        )
