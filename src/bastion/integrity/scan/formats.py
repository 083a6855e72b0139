"""Model formats with their own ways in: NumPy, safetensors, GGUF, JSON configs, HDF5, ONNX."""

from __future__ import annotations

import io
import json
import math
import re
import struct

from bastion.integrity.scan import archives
from bastion.integrity.scan.context import Context

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path
    from typing import Any

    Handler = Callable[[Any, int, int, str, Context], None]


# ---- NumPy -------------------------------------------------------------------------------
def scan_npy(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """An object dtype means the array body is a pickle that numpy.load(allow_pickle) runs."""
    import ast

    from bastion.integrity.scan.engine import scan_pickle_region

    major = data[start + 6] if end - start > 7 else 0
    width = 2 if major == 1 else 4
    if end - start < 8 + width or major not in (1, 2, 3):
        ctx.add("npy.header", "medium", "truncated or unknown .npy header", where, None, "error")
        return
    hlen = int.from_bytes(bytes(data[start + 8 : start + 8 + width]), "little")
    body = start + 8 + width + hlen
    if hlen > 1 << 20 or body > end:
        ctx.add(
            "npy.header", "medium", f".npy header length {hlen} is invalid", where, None, "error"
        )
        return
    try:
        header = ast.literal_eval(bytes(data[start + 8 + width : body]).decode("latin-1"))
        descr = header["descr"]
    except (ValueError, SyntaxError, KeyError, TypeError, MemoryError, RecursionError):
        ctx.add(
            "npy.header",
            "medium",
            ".npy header is not a valid dictionary literal",
            where,
            None,
            "error",
        )
        return
    if _has_object(descr):
        ctx.add(
            "npy.object_dtype",
            "medium",
            "array has object dtype: its data is a pickle (numpy.load needs allow_pickle=True)",
            where,
            None,
            "suspicious",
        )
        scan_pickle_region(data, body, end, f"{where}@data", ctx, strict=True)


def _has_object(descr: Any) -> bool:
    if isinstance(descr, str):
        return descr.lstrip("<>|=").startswith("O")
    if isinstance(descr, list):
        return any(isinstance(f, tuple | list) and len(f) >= 2 and _has_object(f[1]) for f in descr)
    return True  # anything else cannot be a plain dtype description


# ---- safetensors -------------------------------------------------------------------------
_ST_SIZES = {"BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1, "I16": 2,
             "U16": 2, "F16": 2, "BF16": 2, "I32": 4, "U32": 4, "F32": 4, "I64": 8, "U64": 8,
             "F64": 8, "C64": 8, "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75}  # fmt: skip
_ST_MAX_HEADER = 100_000_000


def scan_safetensors(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Header length, JSON, dtype/shape/offset consistency, overlaps, holes, trailing bytes."""
    (n,) = struct.unpack_from("<Q", bytes(data[start : start + 8]))
    if n > _ST_MAX_HEADER:
        ctx.add(
            "safetensors.header_size",
            "high",
            f"header length {n} exceeds the {_ST_MAX_HEADER}-byte limit",
            where,
            None,
            "error",
        )
        return
    dupes: list[str] = []

    def pairs(items: list[tuple[str, Any]]) -> dict[str, Any]:
        keys = [k for k, _ in items]
        dupes.extend(k for k in set(keys) if keys.count(k) > 1)
        return dict(items)

    try:
        header = json.loads(
            bytes(data[start + 8 : start + 8 + n]).decode("utf-8"), object_pairs_hook=pairs
        )
    except (ValueError, RecursionError):
        ctx.add(
            "safetensors.header_json",
            "high",
            "header is not valid UTF-8 JSON",
            where,
            None,
            "error",
        )
        return
    bad = lambda msg: ctx.add("safetensors.inconsistent", "high", msg, where, None, "suspicious")  # noqa: E731
    if dupes:
        bad(f"duplicate header keys: {sorted(set(dupes))[:5]}")
    if not isinstance(header, dict):
        bad("header is not a JSON object")
        return
    meta = header.pop("__metadata__", {})
    if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
        bad("__metadata__ must map strings to strings")
    data_len = end - start - 8 - n
    spans: list[tuple[int, int, str]] = []
    for name, info in header.items():
        if not isinstance(info, dict) or set(info) - {"dtype", "shape", "data_offsets"}:
            bad(f"tensor {name!r} has a malformed entry")
            continue
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        if dtype not in _ST_SIZES:
            bad(f"tensor {name!r} has unknown dtype {dtype!r}")
            continue
        if not (isinstance(shape, list) and all(isinstance(d, int) and d >= 0 for d in shape)):
            bad(f"tensor {name!r} has an invalid shape")
            continue
        if not (
            isinstance(offsets, list)
            and len(offsets) == 2
            and all(isinstance(o, int) for o in offsets)
        ):
            bad(f"tensor {name!r} has invalid data_offsets")
            continue
        begin, stop = offsets
        if not 0 <= begin <= stop <= data_len:
            bad(f"tensor {name!r} offsets {offsets} fall outside the {data_len}-byte data section")
            continue
        if stop - begin != math.ceil(math.prod(shape) * _ST_SIZES[dtype]):
            bad(f"tensor {name!r}: {stop - begin} bytes do not match shape {shape} of {dtype}")
        spans.append((begin, stop, name))
    cursor = 0
    for begin, stop, name in sorted(spans):
        if begin < cursor:
            bad(f"tensor {name!r} overlaps the previous tensor")
        elif begin > cursor:
            bad(f"{begin - cursor} unreferenced bytes before tensor {name!r}")
        cursor = max(cursor, stop)
    if cursor < data_len:
        bad(f"{data_len - cursor} trailing bytes after the last tensor")


# ---- GGUF --------------------------------------------------------------------------------
_GGUF_SCALARS = {0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 10: 8, 11: 8, 12: 8}


class _GGUFError(Exception):
    pass


def scan_gguf(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Walk the metadata key/values; chat templates are checked like tokenizer configs."""
    pos = start + 4

    def take(n: int) -> bytes:
        nonlocal pos
        if n < 0 or pos + n > end:
            raise _GGUFError("metadata runs past the end of the file")
        out = bytes(data[pos : pos + n])
        pos += n
        return out

    def string() -> str:
        (n,) = struct.unpack("<Q", take(8))
        if n > 64 << 20:
            raise _GGUFError(f"string of {n} bytes")
        return take(n).decode("utf-8", "replace")

    def value(vtype: int, depth: int = 0) -> Any:
        if vtype == 8:
            return string()
        if vtype in _GGUF_SCALARS:
            take(_GGUF_SCALARS[vtype])
            return None
        if vtype == 9 and depth < 4:
            (etype,) = struct.unpack("<I", take(4))
            (count,) = struct.unpack("<Q", take(8))
            if count > 1 << 26:
                raise _GGUFError(f"array of {count} items")
            if etype in _GGUF_SCALARS:
                take(count * _GGUF_SCALARS[etype])
                return None
            for _ in range(count):
                value(etype, depth + 1)
                ctx.deadline.check() if _ % 65536 == 0 else None
            return None
        raise _GGUFError(f"unknown value type {vtype}")

    try:
        (version,) = struct.unpack("<I", take(4))
        if version == 1:
            raise _GGUFError("GGUF version 1 is not supported")
        _tensors, kv_count = struct.unpack("<QQ", take(16))
        if kv_count > 1 << 20:
            raise _GGUFError(f"{kv_count} metadata entries")
        for _ in range(kv_count):
            key = string()
            (vtype,) = struct.unpack("<I", take(4))
            val = value(vtype)
            if "chat_template" in key and isinstance(val, str):
                from bastion.integrity.scan.templates import check_template

                check_template(val, f"{where}#{key}", ctx)
    except (_GGUFError, struct.error) as exc:
        ctx.add(
            "gguf.malformed", "medium", f"GGUF metadata is malformed: {exc}", where, None, "error"
        )


# ---- JSON configs ------------------------------------------------------------------------
def scan_json(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Tokenizer configs (chat templates, remote code) and Keras model configs."""
    if end - start > 256 << 20:
        ctx.add(
            "json.too_large",
            "medium",
            "JSON document larger than 256 MiB was not parsed",
            where,
            None,
            "error",
        )
        return
    try:
        if _never_json(bytes(data[start : min(end, start + 4096)])):
            raise ValueError("control byte or invalid UTF-8")  # without copying the rest
        doc = json.loads(bytes(data[start:end]))  # same encoding detection as loaders
    except (ValueError, RecursionError):
        ctx.add(
            "json.invalid", "info", "not valid JSON; no loader would accept it", where, None, "none"
        )
        return
    if isinstance(doc, dict):
        # imported here: most archives hold no JSON, and `bastion scan` starts faster
        from bastion.integrity.scan.keras import check_keras_config, looks_like_keras
        from bastion.integrity.scan.skops import check_skops_schema, looks_like_skops
        from bastion.integrity.scan.templates import check_tokenizer_config

        check_tokenizer_config(doc, where, ctx)
        if looks_like_keras(doc):
            check_keras_config(doc, where, ctx)
        if looks_like_skops(doc):
            check_skops_schema(doc, where, ctx)


_CONTROL = re.compile(rb"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def _never_json(head: bytes) -> bool:
    """`json.loads` is bound to reject a UTF-8 document with this head (tensor data often
    starts with `{` or `[`): it holds a byte that is invalid UTF-8 or a control character,
    which JSON allows neither between tokens nor (strictly parsed) inside strings."""
    if not json.detect_encoding(head).startswith("utf-8"):
        return False
    if _CONTROL.search(head):
        return True
    try:
        head.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError as exc:
        return exc.start < len(head) - 3  # not just a character cut at the end of the head
    return False


# ---- HDF5 (Keras .h5) --------------------------------------------------------------------
class _Region(io.RawIOBase):
    """A read-only file over data[start:end], so h5py reads in place."""

    def __init__(self, data: Any, start: int, end: int) -> None:
        self.data, self.start, self.end, self.pos = data, start, end, 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        base = {0: 0, 1: self.pos, 2: self.end - self.start}[whence]
        self.pos = max(0, base + offset)
        return self.pos

    def tell(self) -> int:
        return self.pos

    def readinto(self, buffer: Any) -> int:
        a = self.start + self.pos
        b = min(self.end, a + len(buffer))
        n = max(0, b - a)
        buffer[:n] = self.data[a:b]
        self.pos += n
        return n


def scan_hdf5(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """Read the `model_config` / `training_config` attributes; the model is never loaded."""
    import h5py

    from bastion.integrity.scan.keras import check_keras_config

    try:
        with h5py.File(_Region(data, start, end), "r") as handle:
            for attr in ("model_config", "training_config"):
                raw = handle.attrs.get(attr)
                if raw is None:
                    continue
                text = raw.decode("utf-8") if isinstance(raw, bytes) else str(raw)
                try:
                    config = json.loads(text)
                except ValueError:
                    ctx.add(
                        "keras.config_json",
                        "medium",
                        f"HDF5 attribute {attr} is not JSON",
                        f"{where}#{attr}",
                        None,
                        "suspicious",
                    )
                    continue
                check_keras_config(config, f"{where}#{attr}", ctx)
    except (OSError, ValueError, KeyError) as exc:
        ctx.add(
            "hdf5.malformed", "medium", f"HDF5 file cannot be read: {exc}", where, None, "error"
        )


# ---- ONNX --------------------------------------------------------------------------------
_ONNX_DOMAINS = frozenset(
    {"", "ai.onnx", "ai.onnx.ml", "ai.onnx.preview.training", "ai.onnx.training", "com.microsoft",
     "com.microsoft.nchwc", "com.microsoft.experimental"}
)  # fmt: skip


def scan_onnx(data: Any, start: int, end: int, where: str, ctx: Context) -> None:
    """External-data locations and symlinks, and operator domains outside the standard sets."""
    from pathlib import Path

    from google.protobuf.message import DecodeError
    from onnx import ModelProto

    model = ModelProto()
    try:
        model.ParseFromString(bytes(data[start:end]))
    except (DecodeError, ValueError, RuntimeError) as exc:
        ctx.add(
            "onnx.malformed", "medium", f"ONNX protobuf does not parse: {exc}", where, None, "error"
        )
        return
    model_dir = None if "!" in where else Path(where).resolve().parent
    local = {f.domain for f in model.functions}
    for graph in _graphs(model.graph):
        for tensor in [
            *graph.initializer,
            *(s.values for s in graph.sparse_initializer),
            *(s.indices for s in graph.sparse_initializer),
        ]:
            if tensor.data_location == 1:  # EXTERNAL
                loc = next((e.value for e in tensor.external_data if e.key == "location"), "")
                _check_external(loc, tensor.name, model_dir, where, ctx)
        for node in graph.node:
            if node.domain not in _ONNX_DOMAINS and node.domain not in local:
                ctx.add(
                    "onnx.custom_domain",
                    "medium",
                    f"operator {node.op_type!r} from domain {node.domain!r} "
                    "needs a custom-op library",
                    where,
                    f"{node.domain}:{node.op_type}",
                    "suspicious",
                )
    for opset in model.opset_import:
        if opset.domain not in _ONNX_DOMAINS and opset.domain not in local:
            ctx.add(
                "onnx.custom_domain",
                "medium",
                f"imports operator set {opset.domain!r}, which needs a custom-op library",
                where,
                opset.domain,
                "suspicious",
            )


def _graphs(graph: Any) -> list[Any]:
    out = [graph]
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("g"):
                out.extend(_graphs(attr.g))
            for sub in attr.graphs:
                out.extend(_graphs(sub))
    return out


def _check_external(
    loc: str, tensor: str, model_dir: Path | None, where: str, ctx: Context
) -> None:
    from pathlib import PurePosixPath

    pure = PurePosixPath(loc.replace("\\", "/"))
    if not loc or pure.is_absolute() or ".." in pure.parts or (len(loc) > 1 and loc[1] == ":"):
        ctx.add(
            "onnx.external_path",
            "critical",
            f"tensor {tensor!r} reads external data from {loc!r}, outside the model directory",
            where,
            None,
            "malicious",
        )
        return
    if model_dir is None:
        return
    target = model_dir / loc
    if not target.resolve().is_relative_to(model_dir):
        ctx.add(
            "onnx.external_symlink",
            "critical",
            f"tensor {tensor!r} external data {loc!r} is a symlink leaving the model directory",
            where,
            None,
            "malicious",
        )


HANDLERS: dict[str, Handler] = {
    "zip": archives.scan_zip,
    "tar": archives.scan_tar,
    "gzip": archives.scan_compressed("gzip"),
    "bz2": archives.scan_compressed("bz2"),
    "xz": archives.scan_compressed("xz"),
    "lzma": archives.scan_compressed("lzma"),
    "zlib": archives.scan_compressed("zlib"),
    "7z": archives.scan_unsupported(
        "7z", "no 7z reader is installed; extract it and scan the files"
    ),
    "lz4": archives.scan_unsupported(
        "lz4", "no lz4 reader is installed; decompress it and scan the result"
    ),
    "npy": scan_npy,
    "safetensors": scan_safetensors,
    "gguf": scan_gguf,
    "json": scan_json,
    "hdf5": scan_hdf5,
    "onnx": scan_onnx,
}
