"""The auth matrix over real HTTP: every refusal has its status and code, and is audited."""

from __future__ import annotations

import time

import pytest
from gateway_helpers import INFER, FreshCodes, Running, infer_body
from sqlalchemy import select

from bastion.gateway.store import api_keys


def refused(gw: Running, response, status: int, code: str) -> dict:  # type: ignore[no-untyped-def]
    """Assert the refusal and that its audit record says the same."""
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    record = gw.audit(int(response.headers["Bastion-Audit-Index"]))
    assert record["decision"] == "refuse"
    assert record["status"] == status and record["code"] == code
    return record


def test_client_key_infers_and_the_request_is_audited(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    key = gw.key()
    response = gw.client(key).post(INFER, json=infer_body(2, request_id="r-1"))
    assert response.status_code == 200, response.text
    out = response.json()
    assert out["model_version"] == "v1" and out["id"] == "r-1"
    assert out["outputs"][0]["shape"] == [2, 10]
    record = gw.audit(int(response.headers["Bastion-Audit-Index"]))
    assert record["decision"] == "allow" and record["key_id"] == key.split("_")[1]
    assert (
        record["model"] == "digits-cnn"
        and record["variant"] == "v1"
        and record["request_id"] == "r-1"
    )
    assert len(record["input_digest"]) == 64 and len(record["output_digest"]) == 64
    assert key.split("_", 2)[2] not in str(record)


def test_key_matrix(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    body = infer_body()
    good = gw.key()
    key_id, secret = good.split("_")[1], good.split("_", 2)[2]
    cases = [
        ({}, 401, "missing_key"),
        ({"Authorization": "Bearer nonsense"}, 401, "malformed_key"),
        ({"Authorization": "Basic dXNlcjpwYXNz"}, 401, "malformed_key"),
        ({"Authorization": f"Bearer bst_{key_id}_{'A' * len(secret)}"}, 401, "invalid_key"),
        ({"Authorization": f"Bearer bst_{'0' * 16}_{secret}"}, 401, "invalid_key"),
        ({"X-API-Key": good[:-1] + ("A" if good[-1] != "A" else "B")}, 401, "invalid_key"),
    ]
    with gw.client() as client:
        for headers, status, code in cases:
            record = refused(gw, client.post(INFER, json=body, headers=headers), status, code)
            assert record["key_id"] is None
        assert client.post(INFER, json=body, headers={"X-API-Key": good}).status_code == 200


def test_revoked_and_expired_keys(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    revoked = gw.key()
    gw.gateway.keys.revoke(revoked.split("_")[1])
    expired = gw.key(expires_at=time.time() - 1)
    refused(gw, gw.client(revoked).post(INFER, json=infer_body()), 401, "revoked_key")
    refused(gw, gw.client(expired).post(INFER, json=infer_body()), 401, "expired_key")


def test_wrong_role_and_other_tenant(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    client_key = gw.key("client")
    refused(gw, gw.client(client_key).get("/admin/keys"), 403, "forbidden_role")
    refused(gw, gw.client(client_key).get("/admin/deployments"), 403, "forbidden_role")
    refused(gw, gw.client(client_key).get("/metrics"), 403, "forbidden_role")
    other = gw.key("client", tenant="acme")
    record = refused(gw, gw.client(other).post(INFER, json=infer_body()), 404, "model_not_found")
    assert record["tenant"] == "acme"
    refused(gw, gw.client(other).get("/v2/models/digits-cnn"), 404, "model_not_found")
    # An admin of another tenant neither sees nor revokes this tenant's keys.
    admin, totp = gw.mfa_key("admin", tenant="acme")
    codes = FreshCodes(totp)
    listing = gw.client(admin, codes[0]).get("/admin/keys")
    assert listing.status_code == 200
    assert {k["tenant"] for k in listing.json()["keys"]} == {"acme"}
    victim = client_key.split("_")[1]
    refused(gw, gw.client(admin, codes[1]).delete(f"/admin/keys/{victim}"), 404, "key_not_found")
    assert gw.client(client_key).post(INFER, json=infer_body()).status_code == 200


def test_metrics_show_an_operator_only_its_own_tenants_models(serve) -> None:  # type: ignore[no-untyped-def]
    models = [
        {"name": "digits-a", "spec": "builtin:digits-cnn", "tenant": "alpha"},
        {"name": "digits-b", "spec": "builtin:digits-cnn", "tenant": "beta"},
    ]
    gw = serve(models=models)
    for tenant, model in (("alpha", "digits-a"), ("beta", "digits-b")):
        answer = gw.client(gw.key("client", tenant)).post(
            f"/v2/models/{model}/infer", json=infer_body()
        )
        assert answer.status_code == 200, answer.text
    # A probe of the other tenant's model is a 404 counted without the model's name.
    probe = gw.client(gw.key("client", "alpha")).post(
        "/v2/models/digits-b/infer", json=infer_body()
    )
    assert probe.status_code == 404
    seen = {}
    for tenant in ("alpha", "beta"):
        response = gw.client(gw.key("operator", tenant)).get("/metrics")
        assert response.status_code == 200, response.text
        seen[tenant] = response.text
    own = 'bastion_requests_total{action="infer",model="digits-%s",status="200",variant="v1"} 1.0'
    assert own % "a" in seen["alpha"] and own % "b" in seen["beta"]
    assert "digits-b" not in seen["alpha"] and "digits-a" not in seen["beta"]
    # Series naming no model stay (aggregated over tenants): rejections, audit lag.
    for text in seen.values():
        assert 'bastion_rejections_total{reason="model_not_found"} 1.0' in text
        assert "bastion_audit_lag_seconds_count" in text


def test_totp_missing_wrong_expired_replayed_and_throttled(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve(auth={"mfa_max_failures": 3, "mfa_lockout_seconds": 600})
    admin, totp = gw.mfa_key("admin")
    refused(gw, gw.client(admin).get("/admin/keys"), 401, "missing_totp")
    refused(
        gw, gw.client(admin, totp.at(time.time() - 300)).get("/admin/keys"), 401, "expired_totp"
    )
    code = totp.now()
    ok = gw.client(admin, code).get("/admin/keys")
    assert ok.status_code == 200
    assert gw.audit(int(ok.headers["Bastion-Audit-Index"]))["action"] == "keys_list"
    refused(gw, gw.client(admin, code).get("/admin/keys"), 401, "totp_replayed")
    # Not enrolled at all.
    bare_admin = gw.key("admin")
    refused(gw, gw.client(bare_admin, code).get("/admin/keys"), 403, "mfa_not_enrolled")
    # Wrong codes: the third failure locks the key, after which even the right code is refused.
    throttled, totp2 = gw.mfa_key("operator")
    wrong = f"{(int(totp2.now()) + 1) % 1_000_000:06d}"
    refused(gw, gw.client(throttled, wrong).get("/admin/deployments"), 401, "invalid_totp")
    refused(
        gw,
        gw.client(throttled, "000000" if wrong != "000000" else "111111").get("/admin/deployments"),
        401,
        "invalid_totp",
    )
    refused(gw, gw.client(throttled, "abcdef").get("/admin/deployments"), 401, "invalid_totp")
    response = gw.client(throttled, totp2.now()).get("/admin/deployments")
    refused(gw, response, 429, "mfa_throttled")
    assert int(response.headers["Retry-After"]) > 0


def test_keys_are_stored_only_as_keyed_hashes(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    raw = gw.key()
    secret = raw.split("_", 2)[2]
    with gw.gateway.engine.connect() as conn:
        row = conn.execute(select(api_keys)).first()
    assert row is not None
    assert secret not in repr(tuple(row)) and row.digest != secret and len(row.digest) == 64
    assert (gw.state_dir / "gateway" / "server.secret").stat().st_mode & 0o077 == 0


def test_admin_api_creates_rotates_and_revokes_keys(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    admin, totp = gw.mfa_key("admin")
    codes = FreshCodes(totp)
    created = gw.client(admin, codes[0]).post("/admin/keys", json={"name": "svc", "role": "client"})
    assert created.status_code == 201, created.text
    new_key = created.json()["key"]
    record = gw.audit(int(created.headers["Bastion-Audit-Index"]))
    assert record["action"] == "keys_create" and new_key.split("_", 2)[2] not in str(record)
    assert gw.client(new_key).post(INFER, json=infer_body()).status_code == 200
    rotated = gw.client(admin, codes[1]).post(
        f"/admin/keys/{new_key.split('_')[1]}/rotate", json={}
    )
    assert rotated.status_code == 200, rotated.text
    replacement = rotated.json()["key"]
    refused(gw, gw.client(new_key).post(INFER, json=infer_body()), 401, "revoked_key")
    assert gw.client(replacement).post(INFER, json=infer_body()).status_code == 200
    revoked = gw.client(admin, codes[2]).delete(f"/admin/keys/{replacement.split('_')[1]}")
    assert revoked.status_code == 200 and revoked.json()["status"] == "revoked"
    refused(gw, gw.client(replacement).post(INFER, json=infer_body()), 401, "revoked_key")


@pytest.mark.parametrize(
    "body", [{"name": "x", "role": "root"}, {"name": "", "role": "client"}, {"role": "client"}]
)
def test_admin_bodies_are_validated_after_authentication(serve, body) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    refused(gw, gw.client().post("/admin/keys", json=body), 401, "missing_key")
    admin, totp = gw.mfa_key("admin")
    refused(gw, gw.client(admin, totp.now()).post("/admin/keys", json=body), 422, "invalid_request")
