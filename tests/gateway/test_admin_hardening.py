"""Regression tests from the gateway security review: confined model specs (C4),
audited-before-committed admin changes and weight validation (C5), masked config (H2)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
from gateway_helpers import INFER, MODEL, Running, infer_body, make_config, pg_url, start
from tcp_proxy import Proxy

from bastion.core.config import Section
from bastion.core.loading import save_model
from bastion.gateway.config import ModelEntry, ServeConfig
from bastion.zoo import build

VERSIONS = f"/admin/models/{MODEL}/versions"


@pytest.fixture(scope="module")
def models_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A models root holding one good digits-cnn version, with a sibling directory outside it."""
    base = tmp_path_factory.mktemp("hardening")
    root = base / "models"
    root.mkdir()
    save_model(build("digits-cnn"), root / "good.safetensors")
    outside = base / "outside"
    outside.mkdir()
    save_model(build("digits-cnn"), outside / "stray.safetensors")
    (root / "escape.safetensors").symlink_to(outside / "stray.safetensors")
    (root / "bundle").mkdir()
    (root / "bundle" / "model.safetensors").symlink_to(outside / "stray.safetensors")
    return root


NO_MFA = {"mfa_roles": []}  # TOTP has tests of its own; these need many admin calls


def refused_spec(response: Any) -> str:
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == "model_refused"
    return str(response.json()["error"]["message"])


class _Recorder(http.server.BaseHTTPRequestHandler):
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        _Recorder.hits.append(self.path)
        self.send_response(404)
        self.end_headers()

    do_POST = do_GET

    def log_message(self, *_: Any) -> None:
        return


def test_admin_api_specs_are_confined_to_the_models_root(serve, models_root: Path) -> None:  # type: ignore[no-untyped-def]
    tenant_a = ModelEntry(name="cancer", spec="builtin:cancer-logreg", tenant="a").model_dump()
    gw = serve(
        auth=NO_MFA,
        deploy={"models_root": str(models_root)},
        models=[*make_config().model_dump()["models"], tenant_a],
    )
    op = gw.key("operator")
    other = gw.key("operator", tenant="b")

    # Tenant b cannot take tenant a's built-in, nor its model name.
    stolen = gw.client(other).post(
        "/admin/models/mine/versions", json={"variant": "v1", "spec": "builtin:cancer-logreg"}
    )
    generic = refused_spec(stolen)
    into_a = gw.client(other).post(
        "/admin/models/cancer/versions", json={"variant": "v2", "spec": "good.safetensors"}
    )
    assert into_a.status_code == 404, into_a.text

    # Paths outside the root, existing or not, and symlinks out get the same answer.
    listener = http.server.HTTPServer(("127.0.0.1", 0), _Recorder)
    threading.Thread(target=listener.serve_forever, daemon=True).start()
    try:
        port = listener.server_address[1]
        for spec in (
            "/etc/shadow",
            "/etc/no-such-model.safetensors",
            "/etc/passwd",
            "../outside/stray.safetensors",
            str(models_root.parent / "outside" / "stray.safetensors"),
            "escape.safetensors",
            "bundle",
            f"http://127.0.0.1:{port}/latest/meta-data",
            f"https://127.0.0.1:{port}/x",
            ".",
        ):
            response = gw.client(other).post(
                "/admin/models/mine/versions", json={"variant": "v1", "spec": spec}
            )
            assert refused_spec(response) == generic, spec
            assert "shadow" not in response.text and "no model at" not in response.text
    finally:
        listener.shutdown()
    assert _Recorder.hits == []  # the gateway fetched nothing
    for signature in ("/etc/shadow", "/etc/missing.sig", "../outside/stray.safetensors"):
        response = gw.client(op).post(
            VERSIONS, json={"variant": "v9", "spec": "good.safetensors", "signature": signature}
        )
        assert refused_spec(response) == generic, signature

    # A file inside the root registers, by relative or absolute path; refusals are audited.
    ok = gw.client(op).post(VERSIONS, json={"variant": "v2", "spec": "good.safetensors"})
    assert ok.status_code == 201, ok.text
    absolute = gw.client(op).post(
        VERSIONS, json={"variant": "v3", "spec": str(models_root / "good.safetensors")}
    )
    assert absolute.status_code == 201, absolute.text
    assert gw.audit(int(stolen.headers["Bastion-Audit-Index"]))["code"] == "model_refused"
    listed = gw.client(other).get("/admin/deployments").json()["models"]
    assert listed == []


@pytest.fixture
def audit_proxy() -> Iterator[Proxy]:
    proxy = Proxy(5432)
    proxy.up()
    yield proxy
    proxy.down()


def test_weights_must_be_finite_and_nothing_changes_without_an_audit_record(  # type: ignore[no-untyped-def]
    serve, pg_schema: str, audit_proxy: Proxy
) -> None:
    proxy = audit_proxy
    gw: Running = serve(auth=NO_MFA, audit={"url": pg_url(proxy.port, pg_schema)})
    op = gw.key("operator")
    client = gw.key()
    raw = b'{"weights":{"v1":1e999}}'
    for body in (
        raw,
        b'{"weights":{"v1":-1}}',
        b'{"weights":{"v1":0}}',
        b'{"weights":{"v1":1e308,"v2":1e308}}',
    ):
        bad = gw.client(op).put(
            f"/admin/models/{MODEL}/weights",
            content=body,
            headers={"content-type": "application/json"},
        )
        assert bad.status_code == 422, (body, bad.text)
        assert bad.json()["error"]["code"] in {"invalid_weights", "unknown_variant"}
    assert gw.client(client).post(INFER, json=infer_body()).status_code == 200

    # With the audit store down, admin changes are refused (503) and not applied.
    proxy.down()
    weights = gw.client(op).put(f"/admin/models/{MODEL}/weights", json={"weights": {"v1": 0.5}})
    assert weights.status_code == 503 and weights.json()["error"]["code"] == "audit_unavailable"
    created = gw.client(gw.key("admin")).post(
        "/admin/keys", json={"name": "ghost", "role": "admin"}
    )
    assert created.status_code == 503
    proxy.up()
    assert [k.name for k in gw.gateway.keys.list() if k.name == "ghost"] == []
    gw.gateway.deployments.refresh(force=True)
    assert gw.gateway.deployments.models[MODEL].weights == {"v1": 1.0}
    assert gw.client(client).post(INFER, json=infer_body()).status_code == 200
    changed = gw.client(op).put(f"/admin/models/{MODEL}/weights", json={"weights": {"v1": 0.5}})
    assert changed.status_code == 200, changed.text
    record = gw.audit(int(changed.headers["Bastion-Audit-Index"]))
    assert record["detail"] == {"weights": {"v1": 0.5}} and record["decision"] == "allow"


class _Upstream(Section):
    upstream: str = "https://llm.example/v1?password=hunter2&model=x"
    upstream_api_key: str | None = "sk-live-123"


class _Extended(ServeConfig):
    llm: _Upstream = _Upstream()


def test_admin_config_masks_secrets_and_other_tenants_models(tmp_path: Path) -> None:
    from bastion.gateway.app import mask_secrets

    assert mask_secrets({"url": "postgresql+psycopg://u:s3cret@db:5432/x?sslpassword=p"}) == {
        "url": "postgresql+psycopg://u:***@db:5432/x?sslpassword=%2A%2A%2A"
    }
    assert mask_secrets({"storage": "async+redis://:pw@cache:6379"})["storage"] == (
        "async+redis://:***@cache:6379"
    )
    assert mask_secrets({"storage": "memory://"})["storage"] == "memory://"
    assert mask_secrets({"db_password": "x", "token": "t", "n": 3}) == {
        "db_password": "***",
        "token": "***",
        "n": 3,
    }
    data = make_config().model_dump()
    data["models"].append(
        ModelEntry(name="cancer", spec="builtin:cancer-logreg", tenant="other").model_dump()
    )
    gw = start(_Extended.model_validate(data), tmp_path / "state")
    try:
        admin, totp = gw.mfa_key("admin")
        shown = gw.client(admin, totp.now()).get("/admin/config")
        assert shown.status_code == 200, shown.text
        text = shown.text
        for secret in ("hunter2", "sk-live-123", "cancer"):
            assert secret not in text, secret
        body = shown.json()
        assert body["llm"]["upstream_api_key"] == "***"
        assert [m["name"] for m in body["models"]] == [MODEL]
        operator = gw.client(gw.key("operator")).get("/admin/config")
        assert operator.status_code == 403
    finally:
        gw.stop()


def test_stored_versions_from_outside_the_root_are_not_loaded(serve, models_root: Path) -> None:  # type: ignore[no-untyped-def]
    """A row written before the models root existed (or straight into the store) stays unloaded."""
    import sqlalchemy as sa

    from bastion.gateway.store import deployments

    gw = serve(auth=NO_MFA, deploy={"models_root": str(models_root)})
    with gw.gateway.engine.begin() as conn:
        for variant, spec in (
            ("old", "builtin:digits-cnn"),
            ("ok", str(models_root / "good.safetensors")),
        ):
            conn.execute(
                sa.insert(deployments).values(
                    model=MODEL,
                    variant=variant,
                    tenant="default",
                    spec=spec,
                    signature=None,
                    digest="0" * 64,
                    signed=False,
                    weight=0.0,
                    registered_at=0.0,
                    registered_by="someone",
                )
            )
    gw.gateway.deployments.refresh(force=True)
    assert sorted(gw.gateway.deployments.models[MODEL].variants) == ["ok", "v1"]
