"""Canary markers are found verbatim and through the encodings a model can be coaxed into."""

from __future__ import annotations

import base64
import codecs

import pytest

from bastion.llm import canary, find_canary


@pytest.fixture
def marker() -> str:
    made = canary()
    assert made.marker in made.snippet
    return made.marker


def test_markers_are_unique() -> None:
    assert canary().marker != canary().marker


def test_marker_carries_128_random_bits() -> None:
    token = canary("ops").marker.rsplit("-", 1)[1]
    assert len(token) == 32 and int(token, 16) >= 0  # 16 random bytes as hex


@pytest.mark.parametrize(
    ("encode", "how"),
    [
        (lambda m: f"Sure! {m}", "verbatim"),
        (lambda m: m.upper(), "verbatim"),
        (lambda m: " ".join(m), "spaced-out"),
        (lambda m: "-".join(m.replace("-", "")), "spaced-out"),
        (lambda m: m[::-1], "reversed"),
        (lambda m: base64.b64encode(m.encode()).decode(), "base64"),
        (lambda m: base64.b64encode(b"prefix " + m.encode() + b" suffix").decode(), "base64"),
        (lambda m: base64.b64encode(b"pr " + m.encode()).decode(), "base64"),
        (lambda m: m.encode().hex(), "hex"),
        (lambda m: " ".join(f"{b:02X}" for b in m.encode()), "hex"),
        (lambda m: codecs.encode(m, "rot13"), "rot13"),
    ],
)
def test_encodings_are_found(marker: str, encode, how: str) -> None:  # type: ignore[no-untyped-def]
    assert find_canary(encode(marker), marker) == how


def test_other_text_is_not_a_leak(marker: str) -> None:
    assert find_canary("The reference number is bst-0000 and nothing else.", marker) is None
    assert find_canary(marker[:10], marker) is None
