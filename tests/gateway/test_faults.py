"""Unreachable Redis or PostgreSQL: fail closed with 503, recover when the service returns.

A switchable TCP proxy in front of the real services plays the outage; the services
themselves keep running.
"""

from __future__ import annotations

import uuid

import redis
from gateway_helpers import INFER, free_port, infer_body, pg_url
from tcp_proxy import Proxy


def test_redis_down_fails_closed_then_recovers(serve) -> None:  # type: ignore[no-untyped-def]
    prefix = f"bastion-test-{uuid.uuid4().hex}"
    proxy = Proxy(6379)
    proxy.up()
    try:
        gw = serve(
            limits={"storage": f"async+redis://127.0.0.1:{proxy.port}", "key_prefix": prefix}
        )
        key = gw.key()
        assert gw.client(key).post(INFER, json=infer_body()).status_code == 200
        proxy.down()
        response = gw.client(key).post(INFER, json=infer_body())
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "limits_unavailable"
        assert (
            gw.audit(int(response.headers["Bastion-Audit-Index"]))["code"] == "limits_unavailable"
        )
        proxy.up()
        assert gw.client(key).post(INFER, json=infer_body()).status_code == 200
    finally:
        proxy.down()
        conn = redis.Redis(host="127.0.0.1")
        for k in conn.scan_iter(f"{prefix}*"):
            conn.delete(k)


def test_redis_on_a_closed_port_fails_closed_unless_fail_open(serve) -> None:  # type: ignore[no-untyped-def]
    closed = f"async+redis://127.0.0.1:{free_port()}"
    gw = serve(limits={"storage": closed})
    response = gw.client(gw.key()).post(INFER, json=infer_body())
    assert response.status_code == 503
    lenient = serve(limits={"storage": closed, "fail_open": True})
    assert lenient.client(lenient.key()).post(INFER, json=infer_body()).status_code == 200


def test_postgres_down_fails_closed_then_recovers(serve, pg_schema: str) -> None:  # type: ignore[no-untyped-def]
    proxy = Proxy(5432)
    proxy.up()
    try:
        url = pg_url(proxy.port, pg_schema)
        gw = serve(store={"url": url}, audit={"url": url})
        key = gw.key()
        assert gw.client(key).post(INFER, json=infer_body()).status_code == 200
        proxy.down()
        response = gw.client(key).post(INFER, json=infer_body())
        assert response.status_code == 503
        assert response.json()["error"]["code"] in {"store_unavailable", "audit_unavailable"}
        proxy.up()
        ok = gw.client(key).post(INFER, json=infer_body())
        assert ok.status_code == 200, ok.text
        assert gw.audit(int(ok.headers["Bastion-Audit-Index"]))["decision"] == "allow"
        assert gw.gateway.audit_log.verify().ok
    finally:
        proxy.down()


def test_audit_store_on_a_closed_port_refuses_inference(serve, pg_schema: str) -> None:  # type: ignore[no-untyped-def]
    gw = serve(audit={"url": pg_url(free_port(), pg_schema)})
    response = gw.client(gw.key()).post(INFER, json=infer_body())
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "audit_unavailable"
    assert "outputs" not in response.text
