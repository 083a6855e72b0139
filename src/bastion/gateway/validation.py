"""Input validation for Open Inference Protocol requests, from the model's signature.

Order matters for safety: the body size is capped while reading (413), the nesting depth
is measured on the raw bytes before any parser recurses (400), and only then is the JSON
parsed and checked against the model: shape, dtype, batch size, finiteness, bounds (422).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import AsyncIterator
from typing import Any

import numpy as np

from bastion.gateway.chain import Rejected

FLOAT_MAX = {
    name: float(np.finfo(t).max)
    for name, t in (("FP16", np.float16), ("FP32", np.float32), ("FP64", np.float64))
}
INT_RANGES = {
    "INT8": (-(2**7), 2**7 - 1),
    "INT16": (-(2**15), 2**15 - 1),
    "INT32": (-(2**31), 2**31 - 1),
    "INT64": (-(2**63), 2**63 - 1),
    "UINT8": (0, 2**8 - 1),
    "UINT16": (0, 2**16 - 1),
    "UINT32": (0, 2**32 - 1),
    "UINT64": (0, 2**64 - 1),
}
DATATYPES = (*FLOAT_MAX, *INT_RANGES)
_JSON_TOKENS = re.compile(rb'"(?:[^"\\]|\\.)*"|[\[\]{}]')


async def read_limited(stream: AsyncIterator[bytes], declared: str | None, max_bytes: int) -> bytes:
    """The request body, refused with 413 as soon as it exceeds `max_bytes`."""
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise Rejected(
                400, "invalid_content_length", "the Content-Length header is not a number"
            ) from None
        if size > max_bytes:
            raise Rejected(
                413, "body_too_large", f"the body has {size} bytes; the limit is {max_bytes}"
            )
    from starlette.requests import ClientDisconnect

    chunks: list[bytes] = []
    total = 0
    try:
        async for chunk in stream:
            total += len(chunk)
            if total > max_bytes:
                raise Rejected(
                    413, "body_too_large", f"the body exceeds the limit of {max_bytes} bytes"
                )
            chunks.append(chunk)
    except ClientDisconnect:
        raise Rejected(400, "client_disconnected", "the client closed the connection") from None
    return b"".join(chunks)


def check_depth(body: bytes, max_depth: int) -> None:
    """Refuse JSON nested deeper than `max_depth` without parsing it (ignoring strings)."""
    if body.count(b"[") + body.count(b"{") <= max_depth:
        return
    depth = 0
    for match in _JSON_TOKENS.finditer(body):
        first = match.group()[0]
        if first in (0x5B, 0x7B):
            depth += 1
            if depth > max_depth:
                raise Rejected(
                    400, "json_too_deep", f"the JSON is nested deeper than {max_depth} levels"
                )
        elif first in (0x5D, 0x7D):
            depth -= 1


def _refuse_constant(name: str) -> Any:
    raise Rejected(422, "non_finite", f"the body contains {name}; only finite numbers are accepted")


_DECODER = json.JSONDecoder(parse_constant=_refuse_constant)  # built once, not per request


def parse_json(body: bytes, max_depth: int) -> Any:
    """Parse a request body, refusing excessive depth, NaN/Infinity and malformed JSON."""
    check_depth(body, max_depth)
    try:
        # what json.loads does with bytes (UTF-8/16/32 detected), on the prebuilt decoder
        return _DECODER.decode(body.decode(json.detect_encoding(body), "surrogatepass"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise Rejected(400, "invalid_json", f"the body is not valid JSON: {exc}") from None
    except RecursionError:
        raise Rejected(400, "json_too_deep", "the JSON is nested too deeply") from None
    except (ValueError, OverflowError):
        # json refuses integers beyond sys.get_int_max_str_digits() with a plain ValueError.
        raise Rejected(
            422, "number_too_large", "the body holds a number with too many digits"
        ) from None


def parse_infer_request(
    payload: Any,
    input_shape: tuple[int, ...],
    input_bounds: tuple[float, float] | None,
    max_batch: int,
) -> tuple[np.ndarray, str | None]:
    """The batch (float32, shape (N, *input_shape)) and request id of an OIP infer request."""
    if not isinstance(payload, dict):
        raise Rejected(
            422, "invalid_request", "the body must be a JSON object with an 'inputs' list"
        )
    request_id = payload.get("id")
    if request_id is not None and (not isinstance(request_id, str) or len(request_id) > 128):
        raise Rejected(422, "invalid_request", "'id' must be a string of at most 128 characters")
    inputs = payload.get("inputs")
    if not isinstance(inputs, list) or len(inputs) != 1 or not isinstance(inputs[0], dict):
        raise Rejected(
            422, "invalid_request", "'inputs' must be a list holding exactly one tensor object"
        )
    tensor = inputs[0]
    datatype, shape, data = tensor.get("datatype"), tensor.get("shape"), tensor.get("data")
    if not isinstance(tensor.get("name"), str):
        raise Rejected(422, "invalid_request", "the input tensor needs a string 'name'")
    if datatype not in DATATYPES:
        raise Rejected(
            422,
            "unsupported_datatype",
            f"datatype {datatype!r} is not supported; use one of {', '.join(DATATYPES)}",
        )
    if not isinstance(shape, list) or not all(
        isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in shape
    ):
        raise Rejected(422, "invalid_shape", "'shape' must be a list of non-negative integers")
    expected = (-1, *input_shape)
    if len(shape) != len(expected) or tuple(shape[1:]) != input_shape:
        raise Rejected(
            422,
            "shape_mismatch",
            f"shape {shape} does not match the model's input {list(expected)}",
        )
    batch = shape[0]
    if batch == 0:
        raise Rejected(422, "empty_batch", "the batch is empty")
    if batch > max_batch:
        raise Rejected(
            413, "batch_too_large", f"batch of {batch} exceeds the maximum of {max_batch}"
        )
    if not isinstance(data, list):
        raise Rejected(422, "invalid_data", "'data' must be a list of numbers")
    try:
        values = np.asarray(data, dtype=np.float64)
    except OverflowError:
        raise Rejected(
            422, "number_too_large", "'data' holds a number too large for a float"
        ) from None
    except (ValueError, TypeError):
        raise Rejected(
            422, "invalid_data", "'data' must hold only numbers, flat or nested to the shape"
        ) from None
    if values.size != math.prod(shape):
        raise Rejected(
            422,
            "shape_mismatch",
            f"'data' holds {values.size} values; shape {shape} needs {math.prod(shape)}",
        )
    if values.ndim != 1 and tuple(values.shape) != tuple(shape):
        raise Rejected(
            422, "shape_mismatch", f"nested 'data' has shape {list(values.shape)}, not {shape}"
        )
    low, high = float(values.min()), float(values.max())  # NaN propagates into both
    if not (math.isfinite(low) and math.isfinite(high)):
        raise Rejected(422, "non_finite", "'data' contains NaN or infinite values")
    if datatype in INT_RANGES:
        int_low, int_high = INT_RANGES[datatype]
        if low < int_low or high > int_high or not (values == np.round(values)).all():
            raise Rejected(422, "dtype_mismatch", f"'data' holds values that are not {datatype}")
    elif max(-low, high) > FLOAT_MAX[datatype]:
        raise Rejected(
            422, "dtype_mismatch", f"'data' holds values outside the range of {datatype}"
        )
    if input_bounds is not None and (low < input_bounds[0] or high > input_bounds[1]):
        bounds = f"[{input_bounds[0]}, {input_bounds[1]}]"
        raise Rejected(422, "out_of_bounds", f"input values must lie in {bounds}")
    return values.astype(np.float32).reshape(shape), request_id
