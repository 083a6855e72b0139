"""Trusted loading: verify, decrypt in memory, scan, and load through safe loaders only."""

from __future__ import annotations

import json
import os
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from integrity_helpers import private
from torch import nn

from bastion.core.adapters.torch import TorchModel
from bastion.core.errors import UnsafeFormatError, UsageError
from bastion.core.loading import load_model, save_model
from bastion.integrity import crypt, keys, signing
from bastion.integrity.loader import UnsafeModelError

SPEC = {
    "layers": [{"type": "linear", "in": 4, "out": 3}],
    "input_shape": [4],
    "n_classes": 3,
    "input_bounds": [0.0, 1.0],
    "class_names": None,
}


def _module() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(4, 3))


def _torch_model() -> TorchModel:
    return TorchModel(_module(), input_shape=(4,), n_classes=3, input_bounds=(0.0, 1.0))


@pytest.fixture()
def signed_safetensors(tmp_path: Path, keydir: Path) -> Path:
    model_dir = tmp_path / "model"
    save_model(_torch_model(), model_dir / "model.safetensors")
    signing.sign_model(model_dir, private(keydir, "ed25519"))
    return model_dir


def _pub(keydir: Path, algorithm: str = "ed25519") -> Path:
    return keydir / algorithm / "public.pem"


def test_signed_directory_loads_and_predicts(signed_safetensors: Path, keydir: Path) -> None:
    model = load_model(signed_safetensors, trusted_keys=[_pub(keydir)])
    probs = model.predict_proba(np.full((2, 4), 0.5, dtype=np.float32))
    assert probs.shape == (2, 3)
    np.testing.assert_allclose(probs.sum(axis=1), 1.0, rtol=1e-5)


def test_tampered_model_never_loads(signed_safetensors: Path, keydir: Path) -> None:
    weights = signed_safetensors / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-3] ^= 0x10
    weights.write_bytes(bytes(data))
    with pytest.raises(signing.ModelMismatchError, match=r"changed: model\.safetensors"):
        load_model(signed_safetensors, trusted_keys=[_pub(keydir)])


def test_untrusted_key_never_loads(signed_safetensors: Path, keydir: Path) -> None:
    from bastion.integrity.dsse import WrongKeyError

    with pytest.raises(WrongKeyError):
        load_model(signed_safetensors, trusted_keys=[_pub(keydir, "other-ed25519")])


def test_encrypted_then_signed_model_loads_with_the_recipient_key(
    tmp_path: Path, keydir: Path
) -> None:
    plain = tmp_path / "model.safetensors"
    save_model(_torch_model(), plain)
    recipient = keys.load_public_key(keydir / "x25519-mlkem768" / "public.pem")
    enc = crypt.encrypt_path(
        plain, tmp_path / "model.safetensors.enc", [crypt.RecipientWrapper(recipient)]
    )
    plain.unlink()
    signing.sign_model(enc, private(keydir, "hybrid"))
    model = load_model(
        enc,
        trusted_keys=[_pub(keydir, "hybrid")],
        decryption_key=keydir / "x25519-mlkem768" / "private.pem",
    )
    assert model.predict_proba(np.zeros((1, 4), dtype=np.float32)).shape == (1, 3)
    with pytest.raises(UsageError, match="is encrypted"):
        load_model(enc, trusted_keys=[_pub(keydir, "hybrid")])


def test_plaintext_where_ciphertext_was_expected_is_refused(
    signed_safetensors: Path, keydir: Path
) -> None:
    from bastion.core.errors import SecurityError

    with pytest.raises(SecurityError, match="expected to be encrypted"):
        load_model(
            signed_safetensors / "model.safetensors",
            decryption_key=keydir / "x25519-mlkem768" / "private.pem",
        )


class _Payload:
    """Pickles to a call of os.mkdir: proof of code execution if it is ever unpickled."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):  # type: ignore[no-untyped-def]
        return (os.mkdir, (str(self.marker),))


def test_torch_pickle_is_loaded_weights_only_even_when_the_env_asks_otherwise(
    tmp_path: Path, keydir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A signed (trusted signer, compromised build) .pt with a code payload: refused, never run."""
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    marker = tmp_path / "pwned"
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    torch.save({"0.weight": torch.zeros(3, 4), "hook": _Payload(marker)}, model_dir / "model.pt")
    (model_dir / "model.pt.json").write_text(json.dumps(SPEC))
    signing.sign_model(model_dir, private(keydir, "ed25519"))
    with pytest.raises(UnsafeFormatError, match="not a plain weights file"):
        load_model(model_dir, trusted_keys=[_pub(keydir)], scan=False)
    assert not marker.exists()
    with pytest.raises(UnsafeModelError, match=r"model.pt \(malicious\)"):
        load_model(model_dir, trusted_keys=[_pub(keydir)])
    assert not marker.exists()


def test_plain_state_dict_loads_weights_only_with_its_spec(
    tmp_path: Path, keydir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    module = _module()
    torch.save(module.state_dict(), model_dir / "model.pt")
    (model_dir / "model.pt.json").write_text(json.dumps(SPEC))
    signing.sign_model(model_dir, private(keydir, "ed25519"))
    loaded = load_model(model_dir, trusted_keys=[_pub(keydir)])
    x = np.full((1, 4), 0.25, dtype=np.float32)
    expected = torch.softmax(module(torch.from_numpy(x)), dim=1).detach().numpy()
    np.testing.assert_allclose(loaded.predict_proba(x), expected, rtol=1e-5)


def test_plain_pickle_is_refused_naming_the_safe_formats(tmp_path: Path, keydir: Path) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}))
    signing.sign_model(path, private(keydir, "ed25519"))
    with pytest.raises(UnsafeFormatError, match="convert it to safetensors"):
        load_model(path, trusted_keys=[_pub(keydir)], scan=False)


def test_untrusted_load_keeps_its_old_behaviour(tmp_path: Path) -> None:
    path = tmp_path / "model.safetensors"
    save_model(_torch_model(), path)
    assert load_model(path).n_classes == 3
    (tmp_path / "m.pkl").write_bytes(pickle.dumps([1]))
    with pytest.raises(UnsafeFormatError):
        load_model(tmp_path / "m.pkl")
