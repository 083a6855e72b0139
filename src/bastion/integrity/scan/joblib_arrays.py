"""Where a joblib array's raw bytes end, from the wrapper state the pickle machine saw."""

from __future__ import annotations

import math
import re

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_TYPESTR = re.compile(r"^[<>|=]?[a-zA-Z](\d+)$")


def array_extent(state: Any) -> tuple[bool, int, bool] | None:
    """(has objects, raw byte count, alignment byte present) or None if the header is unusable.

    Mirrors joblib's NumpyArrayWrapper.read_array: object arrays are a nested pickle,
    others are count * itemsize raw bytes, optionally after one padding-length byte.
    """
    from bastion.integrity.scan.pickle_vm import DictV, Obj

    if not isinstance(state, DictV):
        return None
    shape = state.items.get("shape")
    dtype = state.items.get("dtype")
    if not isinstance(shape, tuple) or not all(isinstance(d, int) and d >= 0 for d in shape):
        return None
    if not isinstance(dtype, Obj) or not isinstance(dtype.args, tuple) or not dtype.args:
        return None
    typestr = dtype.args[0]
    if not isinstance(typestr, str):
        return None
    dstate = dtype.state if isinstance(dtype.state, tuple) else ()
    flags = dstate[7] if len(dstate) > 7 and isinstance(dstate[7], int) else 0
    if typestr.lstrip("<>|=").startswith("O") or flags & 1:
        return True, 0, False
    elsize = dstate[5] if len(dstate) > 5 and isinstance(dstate[5], int) else -1
    if elsize <= 0:
        match = _TYPESTR.match(typestr)
        if match is None:
            return None
        elsize = int(match.group(1))
    aligned = isinstance(state.items.get("numpy_array_alignment_bytes"), int)
    return False, math.prod(shape) * elsize, aligned
