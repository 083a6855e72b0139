"""Property: a single flipped bit anywhere in a signed model, its manifest, its signature, or any
region of a ciphertext is always detected."""

from __future__ import annotations

import base64
import json
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from integrity_helpers import SHARD, make_model, private, public

from bastion.core.errors import BastionError
from bastion.integrity import crypt, keys, signing

SETTINGS = settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
SEG = crypt.MIN_SEGMENT


@pytest.fixture(scope="module", params=["ecdsa-p256", "hybrid"])
def signed(request: pytest.FixtureRequest, keydir: Path) -> Iterator[tuple[Path, keys.PublicKey]]:
    root = Path(tempfile.mkdtemp(prefix="bitflip-"))
    model = make_model(root)
    signing.sign_model(model, private(keydir, request.param), shard_size=SHARD)
    yield model, public(keydir, request.param)
    shutil.rmtree(root)


def _flip(data: bytes, bit: int) -> bytes:
    out = bytearray(data)
    out[(bit // 8) % len(out)] ^= 1 << (bit % 8)
    return bytes(out)


def _assert_detected(model: Path, key: keys.PublicKey, target: Path, new: bytes) -> None:
    original = target.read_bytes()
    assert new != original
    target.write_bytes(new)
    try:
        with pytest.raises(BastionError) as caught:
            signing.verify_model(model, [key])
        assert caught.value.exit_code == 1
    finally:
        target.write_bytes(original)
    signing.verify_model(model, [key])  # restored: verifies again


@SETTINGS
@given(
    name=st.sampled_from(["weights.bin", "sub/layer.bin", "config.json", "model.sig"]),
    bit=st.integers(0, 1 << 20),
)
def test_flip_in_a_signed_file_or_the_signature_file(
    signed: tuple[Path, keys.PublicKey], name: str, bit: int
) -> None:
    model, key = signed
    target = model / name
    _assert_detected(model, key, target, _flip(target.read_bytes(), bit))


def _reencode(sig: Path, field: str, bit: int) -> bytes:
    doc = json.loads(sig.read_bytes())
    envelope = doc["dsseEnvelope"]
    holder, key = (
        (envelope, "payload")
        if field == "manifest"
        else (envelope["signatures"][bit % len(envelope["signatures"])], "sig")
    )
    holder[key] = base64.b64encode(_flip(base64.b64decode(holder[key]), bit)).decode()
    return json.dumps(doc).encode()


@SETTINGS
@given(field=st.sampled_from(["manifest", "signature"]), bit=st.integers(0, 1 << 20))
def test_flip_in_the_decoded_manifest_or_signature_bytes(
    signed: tuple[Path, keys.PublicKey], field: str, bit: int
) -> None:
    """Flips inside the signed statement (the manifest) or the raw signature, validly re-encoded."""
    model, key = signed
    sig = model / "model.sig"
    _assert_detected(model, key, sig, _reencode(sig, field, bit))


@pytest.fixture(scope="module")
def ciphertext() -> Iterator[tuple[Path, keys.PrivateKey, dict[str, tuple[int, int]]]]:
    root = Path(tempfile.mkdtemp(prefix="bitflip-enc-"))
    recipient = keys.generate("x25519-mlkem768")
    src = root / "plain"
    src.write_bytes(bytes(range(256)) * (5 * SEG // 256) + b"tail")
    enc = root / "plain.enc"
    crypt.encrypt_file(
        src, enc, crypt.Envelope.new([crypt.RecipientWrapper(recipient.public())]), segment=SEG
    )
    with enc.open("rb") as handle:
        header = len(crypt.read_header(handle).raw)
    step, total = SEG + crypt.TAG, enc.stat().st_size
    regions = {
        "header": (0, header),
        "first": (header, header + step),
        "middle": (header + 2 * step, header + 3 * step),
        "last": (header + 5 * step, total),
    }
    yield enc, recipient, regions
    shutil.rmtree(root)


@SETTINGS
@given(
    region=st.sampled_from(["header", "first", "middle", "last"]),
    offset=st.integers(0, 1 << 20),
    bit=st.integers(0, 7),
)
def test_flip_in_any_ciphertext_region(
    ciphertext: tuple[Path, keys.PrivateKey, dict[str, tuple[int, int]]],
    region: str,
    offset: int,
    bit: int,
) -> None:
    enc, recipient, regions = ciphertext
    start, end = regions[region]
    data = bytearray(enc.read_bytes())
    data[start + offset % (end - start)] ^= 1 << bit
    with tempfile.TemporaryDirectory() as tmp:
        flipped, out = Path(tmp) / "f.enc", Path(tmp) / "out"
        flipped.write_bytes(bytes(data))
        with pytest.raises(BastionError):
            crypt.decrypt_file(flipped, out, [crypt.RecipientWrapper.for_private(recipient)])
        assert not out.exists()
        assert list(Path(tmp).iterdir()) == [flipped]
