"""Interoperability with OpenSSF model-signing 1.1.1 (ECDSA P-256), in both directions."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from integrity_helpers import SHARD, make_model, private, public

from bastion.integrity import signing

model_signing = pytest.importorskip("model_signing")
MS_CLI = [sys.executable, "-m", "model_signing"]
BASTION_CLI = [sys.executable, "-m", "bastion"]


def _ms_verify_api(model: Path, sig: Path, pub: Path) -> None:
    model_signing.verifying.Config().use_elliptic_key_verifier(public_key=pub).verify(model, sig)


@pytest.mark.parametrize(
    ("hash_type", "shard"), [("sha256", SHARD), ("sha256", None), ("blake3", None)]
)
def test_bastion_signed_verifies_with_model_signing_api(
    tmp_path: Path, keydir: Path, hash_type: str, shard: int | None
) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ecdsa-p256"), hash_type=hash_type, shard_size=shard)
    _ms_verify_api(model, model / "model.sig", keydir / "ecdsa-p256" / "public.pem")
    (model / "config.json").write_text('{"layers": 3}')
    with pytest.raises(ValueError, match="Signature mismatch"):
        _ms_verify_api(model, model / "model.sig", keydir / "ecdsa-p256" / "public.pem")


def test_bastion_cli_signed_verifies_with_model_signing_cli(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    key = keydir / "ecdsa-p256"
    sign = [
        *BASTION_CLI,
        "sign",
        str(model),
        "--key",
        str(key / "private.pem"),
        "--shard-size",
        "0",
    ]
    subprocess.run(sign, check=True, capture_output=True)
    verify = [
        *MS_CLI,
        "verify",
        "key",
        str(model),
        "--signature",
        str(model / "model.sig"),
        "--public_key",
        str(key / "public.pem"),
    ]
    done = subprocess.run(verify, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert "Verification succeeded" in done.stdout
    (model / "weights.bin").write_bytes(b"swapped")
    assert subprocess.run(verify, capture_output=True).returncode == 1


def test_model_signing_cli_signed_verifies_with_bastion(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    key = keydir / "ecdsa-p256"
    sign = [
        *MS_CLI,
        "sign",
        "key",
        str(model),
        "--signature",
        str(model / "model.sig"),
        "--private_key",
        str(key / "private.pem"),
    ]
    subprocess.run(sign, check=True, capture_output=True)
    result = signing.verify_model(model, [public(keydir, "ecdsa-p256")])
    assert result.manifest.serialization.method == "files"
    done = subprocess.run(
        [*BASTION_CLI, "verify", str(model), "--key", str(key / "public.pem")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    (model / "sub" / "layer.bin").write_bytes(b"tampered")
    done = subprocess.run(
        [*BASTION_CLI, "verify", str(model), "--key", str(key / "public.pem")],
        capture_output=True,
        text=True,
    )
    assert done.returncode == 1
    assert "changed: sub/layer.bin" in done.stdout


@pytest.mark.parametrize("hashing_algorithm", ["sha256", "blake3"])
def test_model_signing_api_sharded_signature_verifies_with_bastion(
    tmp_path: Path, keydir: Path, hashing_algorithm: str
) -> None:
    model = make_model(tmp_path)
    sig = tmp_path / "outside.sig"
    hashing = model_signing.hashing.Config().use_shard_serialization(
        hashing_algorithm=hashing_algorithm, shard_size=SHARD
    )
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keydir / "ecdsa-p256" / "private.pem"
    ).set_hashing_config(hashing).sign(model, sig)
    signing.verify_model(model, [public(keydir, "ecdsa-p256")], signature=sig)
    (model / "extra.bin").write_bytes(b"x")
    with pytest.raises(signing.ModelMismatchError, match=r"extra: extra\.bin"):
        signing.verify_model(model, [public(keydir, "ecdsa-p256")], signature=sig)


def test_model_signing_single_file_signature_verifies_with_bastion(
    tmp_path: Path, keydir: Path
) -> None:
    weights = make_model(tmp_path) / "weights.bin"
    sig = tmp_path / "weights.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keydir / "ecdsa-p256" / "private.pem"
    ).sign(weights, sig)
    signing.verify_model(weights, [public(keydir, "ecdsa-p256")], signature=sig)


def test_model_signing_bundle_refused_for_a_non_ecdsa_key(tmp_path: Path, keydir: Path) -> None:
    """A foreign bundle declares no algorithm; only ECDSA keys may accept it."""
    from bastion.integrity import dsse

    model = make_model(tmp_path)
    sig = tmp_path / "m.sig"
    model_signing.signing.Config().use_elliptic_key_signer(
        private_key=keydir / "ecdsa-p256" / "private.pem"
    ).sign(model, sig)
    with pytest.raises(dsse.AlgorithmMismatchError):
        signing.verify_model(model, [public(keydir, "ed25519")], signature=sig)
