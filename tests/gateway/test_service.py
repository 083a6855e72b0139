"""OIP metadata, /metrics, OpenAPI, the HTTP model adapter and a bounded schemathesis run."""

from __future__ import annotations

import numpy as np
import pytest
from gateway_helpers import INFER, MODEL, Running, infer_body

from bastion.core.loading import load_model
from bastion.zoo import build


def test_health_and_metadata(shared: Running) -> None:
    with shared.client() as anonymous:
        assert anonymous.get("/v2/health/live").json() == {"live": True}
        assert anonymous.get("/v2/health/ready").json() == {"ready": True}
        assert anonymous.get("/v2/models/digits-cnn").status_code == 401
        assert "/v2/models/{model_name}/infer" in anonymous.get("/openapi.json").json()["paths"]
    with shared.client(shared.key()) as client:
        meta = client.get(f"/v2/models/{MODEL}").json()
        assert meta["inputs"][0]["shape"] == [-1, 1, 8, 8]
        assert meta["outputs"][0]["shape"] == [-1, 10]
        assert client.get(f"/v2/models/{MODEL}/ready").json() == {"name": MODEL, "ready": True}
        assert client.get("/v2/models/nope").json()["error"]["code"] == "model_not_found"


def test_infer_path_served_directly_keeps_the_framework_answers(shared: Running) -> None:
    """The direct ASGI infer path answers like the route; other methods and paths fall through."""
    with shared.client(shared.key()) as client:
        ok = client.post(INFER, json=infer_body(request_id="r1"))
        assert ok.status_code == 200 and ok.headers["content-type"] == "application/json"
        assert ok.json()["id"] == "r1" and ok.json()["model_version"] == "v1"
        assert "ratelimit-limit" in ok.headers and "bastion-audit-index" in ok.headers
        assert client.get(INFER).status_code == 405
        assert client.post(f"/v2/models/{MODEL}/x/infer", json=infer_body()).status_code == 404
        missing = client.post("/v2/models/nope/infer", json=infer_body())
        assert missing.status_code == 404
        assert missing.json()["error"]["code"] == "model_not_found"


def test_metrics_count_requests_rejections_and_audit(shared: Running) -> None:
    key = shared.key()
    with shared.client(key) as client:
        assert client.post(INFER, json=infer_body()).status_code == 200
        assert client.post(INFER, content=b"{").status_code == 400
    text = shared.client(shared.key("operator")).get("/metrics").text
    assert (
        'bastion_requests_total{action="infer",model="digits-cnn",status="200",variant="v1"}'
        in text
    )
    assert 'bastion_rejections_total{reason="invalid_json"}' in text
    assert "bastion_request_duration_seconds_bucket" in text
    assert "bastion_audit_lag_seconds_count" in text


def test_http_adapter_matches_the_local_model_and_counts_queries(shared: Running) -> None:
    remote = load_model(f"{shared.url}/v2/models/{MODEL}", api_key=shared.key())
    local = build(MODEL)
    x = np.random.default_rng(1).random((300, 1, 8, 8)).astype(np.float32)
    np.testing.assert_allclose(remote.predict_proba(x), local.predict_proba(x), atol=1e-5)
    assert remote.input_shape == (1, 8, 8) and remote.n_classes == 10
    assert remote.input_bounds == (0.0, 1.0)
    assert remote.queries == 300 and remote.requests == 3


def test_http_adapter_reports_refusals_clearly(shared: Running) -> None:
    from bastion.core.errors import InputError

    with pytest.raises(InputError) as exc:
        load_model(f"{shared.url}/v2/models/{MODEL}", api_key="bst_wrong")
    assert "401" in exc.value.message and "malformed_key" in exc.value.message


def test_schemathesis_finds_no_server_error(shared: Running) -> None:
    """Every operation of the served OpenAPI schema, bounded examples each, with a client key."""
    import schemathesis
    from hypothesis import HealthCheck, given, settings

    schema = schemathesis.openapi.from_url(f"{shared.url}/openapi.json")
    headers = {"Authorization": f"Bearer {shared.key()}"}
    failures: list[str] = []
    calls = 0
    for operation in schema.get_all_operations():

        @settings(
            max_examples=15, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        @given(operation.ok().as_strategy())
        def check(case) -> None:  # type: ignore[no-untyped-def]
            nonlocal calls
            calls += 1
            response = case.call(headers=headers)
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code}")

        check()
    assert calls > 50
    assert not failures, failures[:5]
    assert shared.client().get("/v2/health/live").status_code == 200


def test_concurrent_requests_each_get_their_own_answer_and_record(shared: Running) -> None:
    """Requests micro-batched into one forward pass still answer and audit one by one."""
    import asyncio
    import hashlib
    import json

    import httpx

    key = shared.key()
    local = build(MODEL)
    bodies = [infer_body(batch=1 + i % 3, seed=100 + i, request_id=f"r{i}") for i in range(24)]

    async def send() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=shared.url, headers=headers, timeout=30) as client:
            return await asyncio.gather(
                *(client.post(INFER, content=json.dumps(b)) for b in bodies)
            )

    responses = asyncio.run(send())
    for body, response in zip(bodies, responses, strict=True):
        assert response.status_code == 200
        answer = response.json()
        tensor = body["inputs"][0]
        x = np.asarray(tensor["data"], np.float32).reshape(tensor["shape"])
        assert answer["id"] == body["id"]
        got = np.asarray(answer["outputs"][0]["data"]).reshape(answer["outputs"][0]["shape"])
        np.testing.assert_allclose(got, local.predict_proba(x), atol=1e-5)
        record = shared.audit(int(response.headers["Bastion-Audit-Index"]))
        assert record["request_id"] == body["id"]
        assert record["input_digest"] == hashlib.sha256(json.dumps(body).encode()).hexdigest()
