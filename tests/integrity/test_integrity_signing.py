"""Signing and verification: every algorithm and hash layout, and how verification must fail."""

from __future__ import annotations

import base64
import json
import os
from pathlib import Path

import pytest
from integrity_helpers import ALGORITHMS, SHARD, make_model, private, public

from bastion.core.errors import InputError, SecurityError
from bastion.integrity import dsse, manifest, signing, statement
from bastion.integrity.manifest import UnsafePathError


@pytest.mark.parametrize("algorithm", ALGORITHMS)
@pytest.mark.parametrize("hash_type,shard", [("sha256", SHARD), ("sha256", 0), ("blake3", None)])
def test_round_trip(
    tmp_path: Path, keydir: Path, algorithm: str, hash_type: str, shard: int | None
) -> None:
    model = make_model(tmp_path)
    signed = signing.sign_model(
        model, private(keydir, algorithm), hash_type=hash_type, shard_size=shard
    )
    assert signed.signature == model / "model.sig"
    result = signing.verify_model(model, [public(keydir, algorithm)])
    assert result.key.algorithm == algorithm
    assert result.manifest.paths() == {"weights.bin", "sub/layer.bin", "config.json", "empty"}
    assert result.manifest.serialization.hash_type == hash_type


def test_weights_are_sharded_and_hashing_settings_come_from_the_signature(
    tmp_path: Path, keydir: Path
) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ed25519"), shard_size=SHARD)
    result = signing.verify_model(model, [public(keydir, "ed25519")])
    shards = [r.name for r in result.manifest.resources if r.path == "weights.bin"]
    assert shards == ["weights.bin:0:4096", "weights.bin:4096:8192", "weights.bin:8192:10000"]
    assert result.manifest.serialization.shard_size == SHARD


def test_single_file_model(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path) / "weights.bin"
    signing.sign_model(model, private(keydir, "ecdsa-p256"))
    assert (model.parent / "weights.bin.sig").exists()
    signing.verify_model(model, [public(keydir, "ecdsa-p256")])
    model.write_bytes(model.read_bytes()[:-1] + b"!")
    with pytest.raises(signing.ModelMismatchError, match=r"changed: weights\.bin\b") as caught:
        signing.verify_model(model, [public(keydir, "ecdsa-p256")])
    assert caught.value.diff.changed == ["weights.bin"]  # the file, not its manifest entry "."


def test_changed_missing_and_extra_files_are_each_listed(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ed25519"), shard_size=SHARD)
    data = bytearray((model / "weights.bin").read_bytes())
    data[5000] ^= 1
    (model / "weights.bin").write_bytes(bytes(data))
    (model / "config.json").unlink()
    (model / "sub" / "new.py").write_text("print('x')")
    (model / "extra-empty").write_bytes(b"")
    with pytest.raises(signing.ModelMismatchError) as caught:
        signing.verify_model(model, [public(keydir, "ed25519")])
    diff = caught.value.diff
    assert diff.changed == ["weights.bin"]
    assert diff.missing == ["config.json"]
    assert diff.extra == ["extra-empty", "sub/new.py"]
    assert caught.value.exit_code == 1


def test_truncated_model_file_is_changed(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ed25519"))
    (model / "weights.bin").write_bytes((model / "weights.bin").read_bytes()[:100])
    with pytest.raises(signing.ModelMismatchError, match=r"changed: weights\.bin"):
        signing.verify_model(model, [public(keydir, "ed25519")])


def test_ignore_globs_become_signed_paths(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    (model / "README.md").write_text("notes")
    signing.sign_model(model, private(keydir, "ed25519"), ignore=["*.md"])
    (model / "README.md").write_text("edited notes")
    result = signing.verify_model(model, [public(keydir, "ed25519")])
    assert "README.md" in result.manifest.serialization.ignore_paths
    (model / "NEW.md").write_text("not present when signed")
    with pytest.raises(signing.ModelMismatchError, match=r"extra: NEW\.md"):
        signing.verify_model(model, [public(keydir, "ed25519")])


def test_symlinks_are_refused(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ed25519"))
    os.symlink("/etc/passwd", model / "link")
    with pytest.raises(SecurityError, match="symlink"):
        signing.verify_model(model, [public(keydir, "ed25519")])
    with pytest.raises(SecurityError, match="symlink"):
        signing.sign_model(model, private(keydir, "ed25519"))


def test_several_trusted_keys_name_the_one_that_verified(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ml-dsa-65"))
    trusted = [
        public(keydir, "other-ed25519"),
        public(keydir, "ml-dsa-65"),
        public(keydir, "ecdsa-p256"),
    ]
    assert signing.verify_model(model, trusted).key.source.endswith("ml-dsa-65/public.pem")


def test_wrong_key(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ecdsa-p256"))
    with pytest.raises(dsse.WrongKeyError, match="signed by another key"):
        signing.verify_model(model, [public(keydir, "other-ecdsa")])
    with pytest.raises(dsse.WrongKeyError, match="none of the 2 trusted keys"):
        signing.verify_model(
            model, [public(keydir, "other-ecdsa"), public(keydir, "other-ed25519")]
        )


def test_ed25519_key_offered_for_an_ml_dsa_signature(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ml-dsa-65"))
    with pytest.raises(
        dsse.AlgorithmMismatchError, match="signature is ml-dsa-65 but the trusted key is ed25519"
    ):
        signing.verify_model(model, [public(keydir, "ed25519")])


def _edit_bundle(sig: Path, edit) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(sig.read_bytes())
    edit(doc)
    sig.write_text(json.dumps(doc))


@pytest.mark.parametrize("removed", ["ed25519", "ml-dsa-65"])
def test_hybrid_with_one_half_removed(tmp_path: Path, keydir: Path, removed: str) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "hybrid"))
    _edit_bundle(
        model / "model.sig",
        lambda d: d["dsseEnvelope"].update(
            signatures=[s for s in d["dsseEnvelope"]["signatures"] if s["keyid"] != removed]
        ),
    )
    with pytest.raises(dsse.IncompleteHybridError, match=f"missing its {removed} half"):
        signing.verify_model(model, [public(keydir, "hybrid")])


def test_hybrid_stripped_to_its_ed25519_half_is_refused_by_that_half(
    tmp_path: Path, keydir: Path
) -> None:
    """The attacker drops ML-DSA and relabels the hint; the signed statement still says hybrid."""
    from cryptography.hazmat.primitives.asymmetric import ed25519

    from bastion.integrity.keys import PublicKey

    model = make_model(tmp_path)
    hybrid = private(keydir, "hybrid")
    signing.sign_model(model, hybrid)
    half = PublicKey("ed25519", (hybrid.parts[0].public_key(),), "ed25519-half")
    assert isinstance(half.parts[0], ed25519.Ed25519PublicKey)

    def strip(doc: dict) -> None:  # type: ignore[type-arg]
        doc["dsseEnvelope"]["signatures"] = [
            s for s in doc["dsseEnvelope"]["signatures"] if s["keyid"] == "ed25519"
        ]
        doc["verificationMaterial"]["publicKey"]["hint"] = half.hint

    _edit_bundle(model / "model.sig", strip)
    with pytest.raises(dsse.AlgorithmMismatchError, match="statement says hybrid"):
        signing.verify_model(model, [half])


def test_signature_for_another_model(tmp_path: Path, keydir: Path) -> None:
    one, two = make_model(tmp_path, seed=1), make_model(tmp_path, seed=2)
    signing.sign_model(one, private(keydir, "ed25519"))
    with pytest.raises(signing.ModelMismatchError, match=r"changed: sub/layer\.bin, weights\.bin"):
        signing.verify_model(two, [public(keydir, "ed25519")], signature=one / "model.sig")


def test_truncated_signature_file(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ed25519"))
    sig = model / "model.sig"
    sig.write_bytes(sig.read_bytes()[:-40])
    with pytest.raises(dsse.MalformedBundleError, match="truncated"):
        signing.verify_model(model, [public(keydir, "ed25519")])


def test_missing_signature_is_an_input_error(tmp_path: Path, keydir: Path) -> None:
    with pytest.raises(InputError, match="no signature"):
        signing.verify_model(make_model(tmp_path), [public(keydir, "ed25519")])


@pytest.mark.parametrize("bad", ["../outside.bin", "/etc/passwd", "a/../../b", "C:/x", "a\\..\\b"])
def test_manifest_entry_outside_the_model_is_refused(
    tmp_path: Path, keydir: Path, bad: str
) -> None:
    """Even a validly signed statement naming a path outside the model is refused."""
    model = make_model(tmp_path)
    key = private(keydir, "ed25519")
    built = manifest.build(model, manifest.new_serialization("sha256", 0))
    evil = manifest.Resource(bad, -1, -1, "sha256", b"\0" * 32)
    forged = manifest.Manifest(
        built.model_name, built.serialization, (*built.resources, evil), None
    )
    (model / "model.sig").write_bytes(dsse.sign(statement.to_payload(forged, "ed25519"), key))
    with pytest.raises(UnsafePathError, match="outside the model directory") as caught:
        signing.verify_model(model, [public(keydir, "ed25519")])
    assert caught.value.exit_code == 1


def test_extension_fields_keep_the_model_signing_predicate(tmp_path: Path, keydir: Path) -> None:
    model = make_model(tmp_path)
    signing.sign_model(model, private(keydir, "ecdsa-p256"), shard_size=SHARD)
    doc = json.loads((model / "model.sig").read_bytes())
    payload = json.loads(base64.b64decode(doc["dsseEnvelope"]["payload"]))
    assert doc["mediaType"] == "application/vnd.dev.sigstore.bundle.v0.3+json"
    assert payload["_type"] == "https://in-toto.io/Statement/v1"
    assert payload["predicateType"] == "https://model_signing/signature/v1.0"
    assert payload["predicate"]["serialization"]["method"] == "shards"
    assert {"name", "algorithm", "digest"} == set(payload["predicate"]["resources"][0])
    assert payload["predicate"]["bastion"]["signature_algorithm"] == "ecdsa-p256"
    assert {"name": "empty", "size": 0} in payload["predicate"]["bastion"]["files"]
