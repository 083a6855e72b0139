"""Hypothesis fuzzing, bounded in time: the pickle machine against CPython, and hostile bytes."""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import pickle
import struct
import zipfile
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.integrity.scan.engine import scan_data
from bastion.integrity.scan.limits import Limits
from bastion.integrity.scan.policy import load_policy

POLICY = load_policy()
LIMITS = Limits(max_seconds=5.0)
FUZZ = settings(
    max_examples=int(os.environ.get("SCAN_FUZZ_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=list(HealthCheck),
)
VERDICTS = {"safe", "suspicious", "malicious", "error"}


class _Stub:
    """What CPython's unpickler gets instead of every global: inert, records nothing itself."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def __call__(self, *args: Any, **kwargs: Any) -> _Stub:
        return _Stub()

    def __setstate__(self, state: Any) -> None:
        pass

    def append(self, item: Any) -> None:
        pass

    def extend(self, items: Any) -> None:
        pass

    def __setitem__(self, key: Any, value: Any) -> None:
        pass

    def add(self, item: Any) -> None:
        pass


class _Recorder(pickle.Unpickler):
    def __init__(self, data: bytes) -> None:
        super().__init__(io.BytesIO(data))
        self.resolved: list[str] = []

    def find_class(self, module: str, name: str) -> Any:
        self.resolved.append(f"{module}.{name}")
        return type(name, (_Stub,), {})

    def persistent_load(self, pid: Any) -> Any:
        return _Stub()


def cpython_globals(data: bytes) -> set[str]:
    """Every global CPython's own unpickler asks for (up to its first error)."""
    rec = _Recorder(data)
    with contextlib.suppress(Exception):  # malformed streams stop CPython too
        rec.load()
    return set(rec.resolved)


def _short(text: str) -> bytes:
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


NAMES = st.sampled_from(["m0", "m1", "f0", "f1"])
OPS = st.one_of(
    NAMES.map(_short),
    NAMES.map(lambda n: b"S'" + n.encode() + b"'\n"),
    NAMES.map(lambda n: b"X" + struct.pack("<I", len(n)) + n.encode()),
    st.tuples(NAMES, NAMES).map(lambda mn: b"c" + mn[0].encode() + b"\n" + mn[1].encode() + b"\n"),
    st.integers(0, 255).map(lambda i: b"K" + bytes([i])),
    st.integers(0, 3).map(lambda i: b"q" + bytes([i])),
    st.integers(0, 3).map(lambda i: b"h" + bytes([i])),
    st.integers(0, 3).map(lambda i: b"p" + str(i).encode() + b"\n"),
    st.integers(0, 3).map(lambda i: b"g" + str(i).encode() + b"\n"),
    st.sampled_from(
        [
            b"\x93",
            b"R",
            b"(",
            b"t",
            b")",
            b"]",
            b"}",
            b"a",
            b"e",
            b"s",
            b"u",
            b"0",
            b"1",
            b"2",
            b"\x94",
            b"\x85",
            b"\x86",
            b"\x87",
            b"b",
            b"\x81",
            b"o",
            b"N",
            b"\x88",
            b"l",
            b"d",
            b"\x8f",
            b"\x90",
            b"K\x01" * 30,
            b"Q",
            b".",
        ]
    ),
)


@FUZZ
@given(st.sampled_from([0, 2, 4, 5]), st.lists(OPS, min_size=1, max_size=40))
def test_every_global_cpython_resolves_is_reported(proto: int, ops: list[bytes]) -> None:
    data = (b"\x80" + bytes([proto]) if proto else b"") + b"".join(ops) + b"."
    expected = cpython_globals(data)
    result = scan_data(data, POLICY, LIMITS)
    reported = {f.global_ for f in result.findings if f.global_}
    assert expected <= reported, (data, expected, reported)
    assert not any(f.rule == "scan.internal" for f in result.findings)
    if expected:
        assert result.verdict != "safe"


@FUZZ
@given(st.binary(max_size=2048))
def test_random_bytes_get_a_verdict(data: bytes) -> None:
    result = scan_data(data, POLICY, LIMITS)
    assert result.verdict in VERDICTS
    assert not any(f.rule == "scan.internal" for f in result.findings), result.findings


def _seed_containers() -> list[bytes]:
    payload = pickle.dumps({"w": [1.0, 2.0], "n": "x"}, protocol=4)
    zbuf = io.BytesIO()
    with zipfile.ZipFile(zbuf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr("a/data.pkl", payload)
        zf.writestr("a/data/0", b"\x00" * 64)
    header = json.dumps({"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}).encode()
    safetensors = struct.pack("<Q", len(header)) + header + b"\x00" * 8
    npy = io.BytesIO()
    import numpy as np

    np.save(npy, np.arange(4.0))
    gguf = (
        b"GGUF"
        + struct.pack("<IQQ", 3, 0, 1)
        + struct.pack("<Q", 4)
        + b"name"
        + struct.pack("<IQ", 8, 2)
        + b"hi"
    )
    return [zbuf.getvalue(), gzip.compress(payload), safetensors, npy.getvalue(), gguf, payload]


SEEDS = _seed_containers()


@FUZZ
@given(
    st.integers(0, len(SEEDS) - 1),
    st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=8),
    st.integers(0, 10_000),
)
def test_mutated_containers_get_a_verdict(
    which: int, flips: list[tuple[int, int]], cut: int
) -> None:
    data = bytearray(SEEDS[which])
    for pos, value in flips:
        data[pos % len(data)] = value
    mutated = bytes(data[: max(1, len(data) - cut % len(data))])
    result = scan_data(mutated, POLICY, LIMITS)
    assert result.verdict in VERDICTS
    assert not any(f.rule == "scan.internal" for f in result.findings), result.findings


PLAIN = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False)
    | st.text(max_size=20)
    | st.binary(max_size=20),
    lambda inner: (
        st.lists(inner, max_size=40)
        | st.tuples(inner, inner)
        | st.dictionaries(st.text(max_size=5), inner, max_size=5)
        | st.frozensets(st.integers(), max_size=5)
    ),
    max_leaves=200,
)


@FUZZ
@given(PLAIN, st.integers(0, 5))
def test_real_pickler_output_of_plain_data_is_safe(obj: Any, proto: int) -> None:
    # shared references exercise the memo; repeated structures exercise scalar runs
    data = pickle.dumps([obj, obj, [obj] * 3], protocol=proto)
    result = scan_data(data, POLICY, LIMITS)
    assert result.verdict == "safe", (data[:200], result.findings)


# JSON tokens, whitespace, control bytes, and valid, cut or invalid UTF-8 sequences
_JSONISH = st.sampled_from(
    [
        *b'{ } [ ] " : , 1 a \\'.split(),
        *(b" ", b"\t", b"\n", b"\x00", b"\x01", b"\x1f", b"\x7f", b"\xc3\xa9", b"\xe2\x82"),
        *(b"\xf0\x9f\x98\x80", b"\xff", b"\xed\xa0\x80", b"\xef\xbb\xbf"),
    ]
)


@FUZZ
@given(st.lists(_JSONISH, max_size=40).map(b"".join) | st.binary(max_size=64))
def test_json_head_precheck_only_rejects_what_json_rejects(doc: bytes) -> None:
    """The cheap head check that skips tensor data never skips a document json.loads accepts."""
    from bastion.integrity.scan.formats import _never_json

    if _never_json(doc):
        with contextlib.suppress(ValueError, RecursionError):
            json.loads(doc)
            raise AssertionError(f"json.loads accepted {doc!r}")


@FUZZ
@given(st.lists(st.sampled_from(["", ".", "..", "a", "b.pt", " "]), max_size=6).map("/".join))
def test_paths_are_named_as_pathlib_names_them(path: str) -> None:
    """The engine works on strings (no pathlib at start-up) but reports pathlib's names."""
    from pathlib import PurePosixPath

    from bastion.integrity.scan.engine import _normalise

    for candidate in (path, "/" + path, "//" + path, "///" + path, path + "/"):
        assert _normalise(candidate) == str(PurePosixPath(candidate)), candidate
