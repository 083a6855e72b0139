"""Recognise a byte region by content alone (never by file name)."""

from __future__ import annotations

import json
import struct

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_ONNX_FIELDS = frozenset({0x12, 0x1A, 0x22, 0x28, 0x32, 0x3A, 0x42, 0x72, 0x7A, 0x8A})


def sniff(data: Any, start: int, end: int, *, top: bool = True) -> str:
    """The format name of `data[start:end]`: an archive, a model format, "pickle" or "unknown".

    Only a whole file is searched for a zip end record behind a prefix (as zip readers
    accept); archive members are recognised by their first bytes, so tensor data is
    never read beyond its head.
    """
    head = bytes(data[start : min(end, start + 512)])
    if head.startswith((b"PK\x03\x04", b"PK\x05\x06")) or (top and _has_eocd(data, start, end)):
        return "zip"
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"BZh") and len(head) > 3 and head[3:4] in b"123456789":
        return "bz2"
    if head.startswith(b"\xfd7zXZ\x00"):
        return "xz"
    if head.startswith(b"7z\xbc\xaf\x27\x1c"):
        return "7z"
    if head.startswith(b"\x04\x22\x4d\x18"):
        return "lz4"
    if head.startswith(b"\x93NUMPY"):
        return "npy"
    if head.startswith(b"\x89HDF\r\n\x1a\n"):
        return "hdf5"
    if head.startswith(b"GGUF"):
        return "gguf"
    if len(head) >= 262 and head[257:262] == b"ustar":
        return "tar"
    if head[:1] == b"\x80" and len(head) > 1 and head[1] <= 5:
        return "pickle"
    if _is_safetensors(head, end - start):
        return "safetensors"
    if _is_lzma_alone(head):
        return "lzma"
    if len(head) >= 2 and head[0] == 0x78 and (head[0] * 256 + head[1]) % 31 == 0:
        return "zlib"
    if _is_json(head):
        return "json"
    if _is_onnx(head):
        return "onnx"
    return "unknown"


def _is_json(head: bytes) -> bool:
    """A JSON document in any encoding `json.loads(bytes)` detects (UTF-8, -16 or -32)."""
    encoding = json.detect_encoding(head)
    if encoding.startswith("utf-8"):
        return head.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] in (b"{", b"[")
    width = 4 if "32" in encoding else 2
    text = head[: len(head) - len(head) % width].decode(encoding, "replace")
    return text.lstrip("\ufeff \t\r\n")[:1] in ("{", "[")


def _has_eocd(data: Any, start: int, end: int) -> bool:
    tail_start = max(start, end - 65557)
    return bytes(data[tail_start:end]).rfind(b"PK\x05\x06") >= 0


def _is_safetensors(head: bytes, size: int) -> bool:
    if len(head) < 9:
        return False
    (n,) = struct.unpack_from("<Q", head)
    return 2 <= n <= size - 8 and head[8:9] == b"{"


def _is_lzma_alone(head: bytes) -> bool:
    # props byte 0x5D (lc=3, lp=0, pb=2) and a power-of-two-ish dictionary size
    if len(head) < 13 or head[0] != 0x5D:
        return False
    (dict_size,) = struct.unpack_from("<I", head, 1)
    return dict_size >= 4096 and (dict_size & (dict_size - 1) == 0 or dict_size == 0xFFFFFFFF)


def _varint(buf: bytes, i: int) -> tuple[int, int]:
    value = shift = 0
    while i < len(buf) and shift < 64:
        b = buf[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    return -1, i


def _is_onnx(head: bytes) -> bool:
    """ModelProto starts with ir_version (field 1, small varint) then another known field."""
    if head[:1] != b"\x08":
        return False
    version, i = _varint(head, 1)
    return 1 <= version <= 32 and i < len(head) and head[i] in _ONNX_FIELDS
