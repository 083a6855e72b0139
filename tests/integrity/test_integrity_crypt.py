"""Envelope encryption: round trips, wrong keys, truncation, reordering, splicing, atomic output."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from bastion.core.errors import BastionError
from bastion.integrity import crypt, keys
from bastion.integrity.crypt import DecryptionError, Envelope, NoMatchingKeyError, RecipientWrapper

SEG = crypt.MIN_SEGMENT


@pytest.fixture(scope="module")
def recipient() -> keys.PrivateKey:
    return keys.generate("x25519-mlkem768")


def _encrypt(tmp: Path, data: bytes, key: keys.PrivateKey, name: str = "plain") -> Path:
    src, dst = tmp / name, tmp / f"{name}.enc"
    src.write_bytes(data)
    crypt.encrypt_file(src, dst, Envelope.new([RecipientWrapper(key.public())]), segment=SEG)
    return dst


def _segments(path: Path) -> tuple[int, list[tuple[int, int]]]:
    """Header length and the (start, end) of every segment."""
    with path.open("rb") as handle:
        header = crypt.read_header(handle)
    total, start, spans = path.stat().st_size, len(header.raw), []
    while start < total:
        spans.append((start, min(start + SEG + crypt.TAG, total)))
        start += SEG + crypt.TAG
    return len(header.raw), spans


@pytest.mark.parametrize("size", [0, 1, SEG - 1, SEG, SEG + 1, 3 * SEG, 3 * SEG + 77])
def test_round_trip(tmp_path: Path, recipient: keys.PrivateKey, size: int) -> None:
    data = os.urandom(size)
    enc = _encrypt(tmp_path, data, recipient)
    assert size < 32 or data[:32] not in enc.read_bytes()
    out = tmp_path / "out"
    crypt.decrypt_file(enc, out, [RecipientWrapper.for_private(recipient)])
    assert out.read_bytes() == data


def test_every_recipient_can_decrypt_and_others_cannot(
    tmp_path: Path, recipient: keys.PrivateKey
) -> None:
    second, stranger = keys.generate("x25519-mlkem768"), keys.generate("x25519-mlkem768")
    src = tmp_path / "plain"
    src.write_bytes(b"weights" * 1000)
    envelope = Envelope.new(
        [RecipientWrapper(recipient.public()), RecipientWrapper(second.public())]
    )
    crypt.encrypt_file(src, tmp_path / "x.enc", envelope)
    for who in (recipient, second):
        assert (
            crypt.decrypt_bytes(tmp_path / "x.enc", [RecipientWrapper.for_private(who)])
            == src.read_bytes()
        )
    with pytest.raises(
        NoMatchingKeyError, match="none of the keys given can open this file"
    ) as caught:
        crypt.decrypt_bytes(tmp_path / "x.enc", [RecipientWrapper.for_private(stranger)])
    assert caught.value.exit_code == 2


def test_passphrase_and_wrong_passphrase(tmp_path: Path) -> None:
    src = tmp_path / "plain"
    src.write_bytes(b"secret model")
    crypt.encrypt_path(src, tmp_path / "p.enc", [crypt.PassphraseWrapper(b"correct horse")])
    assert (
        crypt.decrypt_bytes(tmp_path / "p.enc", [crypt.PassphraseWrapper(b"correct horse")])
        == b"secret model"
    )
    with pytest.raises(keys.WrongPassphraseError, match="wrong passphrase"):
        crypt.decrypt_bytes(tmp_path / "p.enc", [crypt.PassphraseWrapper(b"battery staple")])


def test_truncation_at_a_segment_boundary(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    enc = _encrypt(tmp_path, os.urandom(3 * SEG + 10), recipient)
    _, spans = _segments(enc)
    enc.write_bytes(enc.read_bytes()[: spans[-1][0]])
    with pytest.raises(DecryptionError, match="truncated: its final segment is missing"):
        crypt.decrypt_bytes(enc, [RecipientWrapper.for_private(recipient)])


@pytest.mark.parametrize("cut", [1, 17, SEG // 2])
def test_truncation_inside_a_segment(tmp_path: Path, recipient: keys.PrivateKey, cut: int) -> None:
    enc = _encrypt(tmp_path, os.urandom(3 * SEG + 10), recipient)
    enc.write_bytes(enc.read_bytes()[:-cut])
    with pytest.raises(DecryptionError):
        crypt.decrypt_bytes(enc, [RecipientWrapper.for_private(recipient)])


def test_header_only_file_is_truncated(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    enc = _encrypt(tmp_path, b"abc", recipient)
    header_len, _ = _segments(enc)
    enc.write_bytes(enc.read_bytes()[:header_len])
    with pytest.raises(DecryptionError, match="truncated"):
        crypt.decrypt_bytes(enc, [RecipientWrapper.for_private(recipient)])


def test_reordered_segments_fail(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    enc = _encrypt(tmp_path, os.urandom(4 * SEG), recipient)
    data = enc.read_bytes()
    _, spans = _segments(enc)
    (a0, a1), (b0, b1) = spans[1], spans[2]
    enc.write_bytes(data[:a0] + data[b0:b1] + data[a0:a1] + data[b1:])
    with pytest.raises(DecryptionError, match="segment 1 failed to authenticate"):
        crypt.decrypt_bytes(enc, [RecipientWrapper.for_private(recipient)])


def test_segments_spliced_from_another_file_fail(
    tmp_path: Path, recipient: keys.PrivateKey
) -> None:
    one = _encrypt(tmp_path, os.urandom(3 * SEG), recipient, "one")
    two = _encrypt(tmp_path, os.urandom(3 * SEG), recipient, "two")
    _, spans1 = _segments(one)
    _, spans2 = _segments(two)
    d1, d2 = one.read_bytes(), two.read_bytes()
    (s0, s1), (t0, t1) = spans1[1], spans2[1]
    one.write_bytes(d1[:s0] + d2[t0:t1] + d1[s1:])
    with pytest.raises(DecryptionError, match="segment 1"):
        crypt.decrypt_bytes(one, [RecipientWrapper.for_private(recipient)])


def test_failed_decrypt_writes_nothing(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    enc = _encrypt(tmp_path, os.urandom(3 * SEG), recipient)
    data = bytearray(enc.read_bytes())
    data[-1] ^= 0x80
    enc.write_bytes(bytes(data))
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    with pytest.raises(DecryptionError):
        crypt.decrypt_file(enc, out_dir / "model.bin", [RecipientWrapper.for_private(recipient)])
    assert list(out_dir.iterdir()) == []


def test_interrupted_encrypt_leaves_nothing_that_looks_complete(
    tmp_path: Path, recipient: keys.PrivateKey
) -> None:
    """Kill an encryption mid-stream: no output appears; the scratch file does not decrypt."""
    pub = tmp_path / "r.pub"
    pub.write_bytes(recipient.public().pem)
    fifo = tmp_path / "source"
    os.mkfifo(fifo)
    out = tmp_path / "out" / "model.enc"
    code = (
        "import sys; from pathlib import Path; from bastion.integrity import crypt, keys\n"
        "w = crypt.RecipientWrapper(keys.load_public_key(sys.argv[1]))\n"
        "crypt.encrypt_file(Path(sys.argv[2]), Path(sys.argv[3]), crypt.Envelope.new([w]))\n"
    )
    child = subprocess.Popen([sys.executable, "-c", code, str(pub), str(fifo), str(out)])
    with fifo.open("wb") as writer:
        writer.write(os.urandom(3 << 20))
        writer.flush()
        deadline = time.monotonic() + 60
        while not any(out.parent.glob("*.partial")) and time.monotonic() < deadline:
            time.sleep(0.05)
        while any(p.stat().st_size < (2 << 20) for p in out.parent.glob("*.partial")):
            time.sleep(0.05)
            if time.monotonic() > deadline:
                break
        child.send_signal(signal.SIGKILL)
        child.wait()
    assert not out.exists()
    leftovers = list(out.parent.glob("*.partial"))
    assert leftovers and all(p.name.startswith(".") for p in leftovers)
    with pytest.raises(DecryptionError, match="truncated"):
        crypt.decrypt_bytes(leftovers[0], [RecipientWrapper.for_private(recipient)])


def _tree(root: Path) -> dict[str, bytes]:
    return {
        p.relative_to(root).as_posix(): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def _model_dir(root: Path) -> Path:
    model = root / "model"
    (model / "nested").mkdir(parents=True)
    (model / "secret_layer_names.bin").write_bytes(os.urandom(5000))
    (model / "nested" / "config.json").write_text('{"a": 1}')
    (model / "empty").write_bytes(b"")
    return model


def test_directory_round_trip_hides_names(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    model = _model_dir(tmp_path)
    enc = crypt.encrypt_path(model, tmp_path / "model.enc", [RecipientWrapper(recipient.public())])
    listing = [p.name for p in enc.rglob("*")]
    assert not any("secret" in n or "config" in n for n in listing)
    out = crypt.decrypt_path(enc, tmp_path / "back", [RecipientWrapper.for_private(recipient)])
    assert _tree(out) == _tree(model)


def test_directory_swapped_missing_and_unlisted_objects(
    tmp_path: Path, recipient: keys.PrivateKey
) -> None:
    model = _model_dir(tmp_path)
    enc = crypt.encrypt_path(model, tmp_path / "model.enc", [RecipientWrapper(recipient.public())])
    opener = [RecipientWrapper.for_private(recipient)]
    objects = sorted((enc / crypt.OBJECTS).iterdir())
    a, b = objects[0].read_bytes(), objects[1].read_bytes()
    objects[0].write_bytes(b)
    objects[1].write_bytes(a)
    with pytest.raises(DecryptionError, match="swapped"):
        crypt.decrypt_path(enc, tmp_path / "out1", opener)
    assert not (tmp_path / "out1").exists()
    objects[0].write_bytes(a)
    objects[1].write_bytes(b)
    (enc / crypt.OBJECTS / ("ab" * 16 + ".enc")).write_bytes(a)
    with pytest.raises(DecryptionError, match="not in the manifest"):
        crypt.decrypt_path(enc, tmp_path / "out2", opener)
    (enc / crypt.OBJECTS / ("ab" * 16 + ".enc")).unlink()
    objects[2].unlink()
    with pytest.raises(DecryptionError, match="is missing"):
        crypt.decrypt_path(enc, tmp_path / "out3", opener)
    assert not (tmp_path / "out3").exists()


class ToyKms:
    """A stand-in for a cloud KMS: wraps data keys with AES key wrap under a key it keeps."""

    def __init__(self, key_id: str) -> None:
        self.key_id, self._kek = key_id, os.urandom(32)

    def wrap(self, data_key: bytes) -> dict[str, Any]:
        from cryptography.hazmat.primitives.keywrap import aes_key_wrap

        return {
            "type": "kms",
            "key_id": self.key_id,
            "blob": aes_key_wrap(self._kek, data_key).hex(),
        }

    def unwrap(self, stanza: Mapping[str, Any]) -> bytes | None:
        from cryptography.hazmat.primitives.keywrap import aes_key_unwrap

        if stanza.get("type") != "kms" or stanza.get("key_id") != self.key_id:
            return None
        return aes_key_unwrap(self._kek, bytes.fromhex(stanza["blob"]))


def test_a_kms_plugs_in_through_the_key_wrapper_protocol(
    tmp_path: Path, recipient: keys.PrivateKey
) -> None:
    kms = ToyKms("projects/p/keys/model")
    src = tmp_path / "plain"
    src.write_bytes(b"model bytes")
    crypt.encrypt_path(src, tmp_path / "k.enc", [kms, RecipientWrapper(recipient.public())])
    assert crypt.decrypt_bytes(tmp_path / "k.enc", [kms]) == b"model bytes"
    assert (
        crypt.decrypt_bytes(tmp_path / "k.enc", [RecipientWrapper.for_private(recipient)])
        == b"model bytes"
    )
    with pytest.raises(NoMatchingKeyError):
        crypt.decrypt_bytes(tmp_path / "k.enc", [ToyKms("another")])


def test_not_an_encrypted_file(tmp_path: Path, recipient: keys.PrivateKey) -> None:
    (tmp_path / "x").write_bytes(b"plain text")
    with pytest.raises(BastionError, match="not a Bastion encrypted file"):
        crypt.decrypt_bytes(tmp_path / "x", [RecipientWrapper.for_private(recipient)])
