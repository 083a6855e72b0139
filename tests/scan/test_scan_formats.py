"""NumPy, safetensors, GGUF, Keras, ONNX and chat templates: each format's own way in."""

from __future__ import annotations

import json
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus import _gguf, _onnx_model
from scan_helpers import rules

from bastion.integrity.scan import ScanReport, scan

Scan = Callable[..., ScanReport]


def _st(header: dict[str, object] | bytes, body: bytes) -> bytes:
    raw = header if isinstance(header, bytes) else json.dumps(header).encode()
    return struct.pack("<Q", len(raw)) + raw + body


def test_valid_safetensors_is_safe(scan_bytes: Scan) -> None:
    data = _st(
        {
            "__metadata__": {"a": "b"},
            "w": {"dtype": "F16", "shape": [2, 2], "data_offsets": [0, 8]},
        },
        b"\x00" * 8,
    )
    assert scan_bytes(data).safe


@pytest.mark.parametrize(
    ("header", "body", "needle"),
    [
        (
            {"w": {"dtype": "F32", "shape": [2], "data_offsets": [0, 4]}},
            b"\x00" * 4,
            "do not match",
        ),
        (
            {"w": {"dtype": "F32", "shape": [1], "data_offsets": [4, 8]}},
            b"\x00" * 8,
            "unreferenced",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}}, b"\x00" * 9, "trailing"),
        (
            {"w": {"dtype": "X9", "shape": [1], "data_offsets": [0, 4]}},
            b"\x00" * 4,
            "unknown dtype",
        ),
        ({"w": {"dtype": "F32", "shape": [1], "data_offsets": [0, 40]}}, b"\x00" * 4, "outside"),
    ],
)
def test_inconsistent_safetensors_headers(
    scan_bytes: Scan, header: dict[str, object], body: bytes, needle: str
) -> None:
    report = scan_bytes(_st(header, body))
    assert report.verdict == "suspicious"
    assert any(needle in f.message for f in report.files[0].findings)


def test_safetensors_huge_or_broken_header_is_an_error(scan_bytes: Scan) -> None:
    assert scan_bytes(struct.pack("<Q", 2**40) + b"{" * 16).verdict in ("error", "suspicious")
    assert scan_bytes(_st(b"{not json}", b"")).verdict == "error"


def test_npy_object_array_pickle_is_scanned_numeric_is_not(scan_bytes: Scan) -> None:
    import io

    import numpy as np

    buf = io.BytesIO()
    np.save(buf, np.arange(12.0).reshape(3, 4))
    assert scan_bytes(buf.getvalue(), "a.npy").safe
    arr = np.array([{"k": 1}, None], dtype=object)
    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=True)
    assert scan_bytes(buf.getvalue(), "b.npy").verdict == "suspicious"


def test_keras_lambda_and_module_references(scan_bytes: Scan) -> None:
    lam = {
        "class_name": "Sequential",
        "config": {"layers": [{"class_name": "Lambda", "config": {"function": "x"}}]},
    }
    assert scan_bytes(json.dumps(lam).encode(), "config.json").verdict == "malicious"
    ref = {
        "class_name": "Sequential",
        "config": {"layers": [{"module": "builtins", "class_name": "function", "config": "eval"}]},
    }
    assert scan_bytes(json.dumps(ref).encode(), "config.json").verdict == "malicious"
    custom = {
        "class_name": "Sequential",
        "config": {
            "layers": [
                {
                    "module": "mylib.layers",
                    "class_name": "Fancy",
                    "config": {},
                    "registered_name": "my>Fancy",
                }
            ]
        },
    }
    assert scan_bytes(json.dumps(custom).encode(), "config.json").verdict == "suspicious"


def test_onnx_external_data_inside_the_directory_is_safe(tmp_path: Path) -> None:
    (tmp_path / "weights.bin").write_bytes(b"\x00" * 16)
    (tmp_path / "model.onnx").write_bytes(_onnx_model("weights.bin"))
    assert scan(tmp_path / "model.onnx").safe


def test_onnx_escapes_and_custom_domains(tmp_path: Path) -> None:
    (tmp_path / "a.onnx").write_bytes(_onnx_model("../secret"))
    assert "onnx.external_path" in rules(scan(tmp_path / "a.onnx"))
    (tmp_path / "b.onnx").write_bytes(_onnx_model(domain="evil.ops"))
    assert scan(tmp_path / "b.onnx").verdict == "suspicious"


@pytest.mark.parametrize(
    "template",
    [
        "{{ self.__init__.__globals__ }}",
        "{{ ''.__class__.__mro__[1].__subclasses__() }}",
        "{{ x|attr('__globals__') }}",
        "{{ lipsum['__glo' + 'bals__'] }}",
        "{{ namespace.__init__ }}",
        "{% for m in messages %}{{ m|attr(m['k']) }}{% endfor %}",
        "{% set a = '__cl' ~ 'ass__' %}{{ ''[a] }}",
        "{{ messages|map(attribute='_' ~ 'x')|list }}",
    ],
)
def test_template_escapes_are_malicious(scan_bytes: Scan, template: str) -> None:
    report = scan_bytes(json.dumps({"chat_template": template}).encode(), "tokenizer_config.json")
    assert report.verdict == "malicious", template


def test_ordinary_chat_templates_are_safe(scan_bytes: Scan) -> None:
    template = (
        "{% set ns = namespace(first=true) %}{% for message in messages %}"
        "{% if message['role'] == 'system' %}{{ '<|system|>' + message['content'] }}"
        "{% elif message.role == 'user' %}{{ message.content | trim }}{% endif %}"
        "{% if loop.last %}{% break %}{% endif %}{% endfor %}{{ raise_exception('x') if false }}"
    )
    assert scan_bytes(
        json.dumps({"chat_template": template}).encode(), "tokenizer_config.json"
    ).safe


def test_gguf_template_and_malformed_metadata(scan_bytes: Scan) -> None:
    assert (
        scan_bytes(_gguf({"tokenizer.chat_template": "{{ cycler.__init__ }}"}), "m.gguf").verdict
        == "malicious"
    )
    assert scan_bytes(_gguf({"general.name": "x"}), "m.gguf").safe
    broken = b"GGUF" + struct.pack("<IQQ", 3, 0, 5) + struct.pack("<Q", 2**50)
    assert scan_bytes(broken, "m.gguf").verdict == "error"


def test_text_is_safe_and_unknown_binary_is_unscannable(scan_bytes: Scan) -> None:
    assert scan_bytes(b"just some notes\n", "notes.txt").safe
    assert scan_bytes(b"\x00\x01\x02\xff" * 100, "blob.bin").verdict == "error"
