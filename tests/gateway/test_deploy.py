"""Deployment control: signed versions, blue-green switch, canary weights; all audited."""

from __future__ import annotations

from pathlib import Path

import pytest
from gateway_helpers import INFER, FreshCodes, Running, infer_body

from bastion.core.loading import save_model
from bastion.zoo import build


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """digits-cnn saved in its safe format, in a directory of its own (a new 'version').

    Its parent is the gateway's `[deploy] models_root` in these tests.
    """
    directory = tmp_path_factory.mktemp("models") / "v2"
    directory.mkdir()
    save_model(build("digits-cnn"), directory / "model.safetensors")
    save_model(build("cancer-logreg"), directory.parent / "logreg.skops")
    return directory


def root(model_dir: Path) -> dict[str, str]:
    return {"models_root": str(model_dir.parent)}


def operator(gw: Running) -> tuple[str, FreshCodes]:
    """An operator key and its TOTP codes (each usable once)."""
    key, totp = gw.mfa_key("operator")
    return key, FreshCodes(totp)


def versions_seen(gw: Running, key: str, n: int) -> set[str]:
    with gw.client(key) as client:
        return {client.post(INFER, json=infer_body()).json()["model_version"] for _ in range(n)}


def test_register_switch_and_canary(serve, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    gw = serve(deploy=root(model_dir))
    client_key = gw.key()
    op, codes = operator(gw)
    spec = str(model_dir / "model.safetensors")
    registered = gw.client(op, codes[0]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v2", "spec": spec}
    )
    assert registered.status_code == 201, registered.text
    weights = {v["variant"]: v["weight"] for v in registered.json()["variants"]}
    assert weights == {"v1": 1.0, "v2": 0.0}
    record = gw.audit(int(registered.headers["Bastion-Audit-Index"]))
    assert record["action"] == "version_register" and record["variant"] == "v2"
    assert len(record["detail"]["digest"]) == 64
    assert versions_seen(gw, client_key, 5) == {"v1"}

    switched = gw.client(op, codes[1]).post(
        "/admin/models/digits-cnn/activate", json={"variant": "v2"}
    )
    assert switched.status_code == 200, switched.text
    assert versions_seen(gw, client_key, 5) == {"v2"}
    assert gw.audit(int(switched.headers["Bastion-Audit-Index"]))["detail"] == {"active": "v2"}

    canary = gw.client(op, codes[2]).put(
        "/admin/models/digits-cnn/weights", json={"weights": {"v1": 1, "v2": 1}}
    )
    assert canary.status_code == 200, canary.text
    assert versions_seen(gw, client_key, 60) == {"v1", "v2"}


def test_deployment_state_survives_a_restart(serve, model_dir: Path, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    state = tmp_path / "state"
    gw = serve(state_dir=state, deploy=root(model_dir))
    op, codes = operator(gw)
    spec = str(model_dir / "model.safetensors")
    gw.client(op, codes[0]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v2", "spec": spec}
    )
    assert (
        gw.client(op, codes[1])
        .post("/admin/models/digits-cnn/activate", json={"variant": "v2"})
        .status_code
        == 200
    )
    key = gw.key()
    gw.stop()
    again = serve(state_dir=state, deploy=root(model_dir))
    assert versions_seen(again, key, 3) == {"v2"}


def test_bad_deployment_requests(serve, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    gw = serve(deploy=root(model_dir))
    op, codes = operator(gw)
    bad = gw.client(op, codes[0]).put(
        "/admin/models/digits-cnn/weights", json={"weights": {"v9": 1}}
    )
    assert bad.status_code == 422 and bad.json()["error"]["code"] == "unknown_variant"
    pickle = model_dir / "evil.pkl"
    pickle.write_bytes(b"\x80\x04cos\nsystem\n.")
    refused = gw.client(op, codes[1]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v3", "spec": str(pickle)}
    )
    assert refused.status_code == 422 and refused.json()["error"]["code"] == "model_refused"
    mismatch = gw.client(op, codes[2]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v4", "spec": "logreg.skops"}
    )
    assert mismatch.json()["error"]["code"] == "signature_mismatch"
    client = gw.key()
    assert (
        gw.client(client)
        .post("/admin/models/digits-cnn/activate", json={"variant": "v1"})
        .status_code
        == 403
    )


def test_unsigned_models_are_refused_when_signing_is_required(serve, model_dir: Path) -> None:  # type: ignore[no-untyped-def]
    from bastion.integrity import keys as ikeys
    from bastion.integrity.signing import sign_model

    signer = ikeys.generate("ed25519")
    keydir = model_dir.parent / "keys"
    keydir.mkdir(exist_ok=True)
    _, public = (
        ikeys.write_keypair(signer, keydir, None)
        if not (keydir / "public.pem").exists()
        else (None, keydir / "public.pem")
    )
    signed_dir = model_dir.parent / "signed"
    if not signed_dir.exists():
        signed_dir.mkdir()
        (signed_dir / "model.safetensors").write_bytes(
            (model_dir / "model.safetensors").read_bytes()
        )
        for extra in model_dir.glob("model.safetensors.*"):
            (signed_dir / extra.name).write_bytes(extra.read_bytes())
        sign_model(signed_dir, ikeys.load_private_key(keydir / "private.pem", None))
    gw = serve(deploy={"trusted_keys": [str(public)], **root(model_dir)}, models=[])
    op, codes = operator(gw)
    unsigned = gw.client(op, codes[0]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v1", "spec": str(model_dir)}
    )
    assert unsigned.status_code == 422 and unsigned.json()["error"]["code"] == "model_refused"
    assert gw.audit(int(unsigned.headers["Bastion-Audit-Index"]))["decision"] == "refuse"
    signed = gw.client(op, codes[1]).post(
        "/admin/models/digits-cnn/versions", json={"variant": "v1", "spec": str(signed_dir)}
    )
    assert signed.status_code == 201, signed.text
    assert signed.json()["variants"][0]["signed"] is True
