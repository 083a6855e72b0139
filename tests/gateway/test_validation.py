"""Hostile bodies get a 4xx with a machine-readable code, and the server stays up."""

from __future__ import annotations

import json

import numpy as np
import pytest
from gateway_helpers import INFER, Running, infer_body

from bastion.gateway.chain import Rejected
from bastion.gateway.validation import check_depth, parse_infer_request, parse_json


@pytest.fixture(scope="module")
def client_key(shared: Running) -> str:
    return shared.key()


def post(gw: Running, key: str, content: bytes | str, **headers: str):  # type: ignore[no-untyped-def]
    data = content.encode() if isinstance(content, str) else content
    with gw.client(key) as client:
        return client.post(
            INFER, content=data, headers={"Content-Type": "application/json", **headers}
        )


def tensor(shape: list[int], data: object, datatype: str = "FP32") -> str:
    return json.dumps(
        {"inputs": [{"name": "input", "shape": shape, "datatype": datatype, "data": data}]}
    )


ONES = [0.5] * 64
CASES = [
    ("{not json", 400, "invalid_json"),
    (b"\xff\xfe{}", 400, "invalid_json"),
    ("[1, NaN]", 422, "non_finite"),
    (
        tensor([1, 1, 8, 8], [*ONES[:-1], "Infinity"]).replace('"Infinity"', "Infinity"),
        422,
        "non_finite",
    ),
    (tensor([1, 1, 8, 8], [*ONES[:-1], 0]).replace("0]", "1e999]"), 422, "non_finite"),
    ("[" * 10_000 + "]" * 10_000, 400, "json_too_deep"),
    ('{"a":' * 5_000 + "1" + "}" * 5_000, 400, "json_too_deep"),
    ("[]", 422, "invalid_request"),
    ('{"inputs": []}', 422, "invalid_request"),
    (tensor([1, 64], ONES), 422, "shape_mismatch"),
    (tensor([1, 1, 8, 8], ONES[:-1]), 422, "shape_mismatch"),
    (tensor([2, 1, 8, 8], ONES), 422, "shape_mismatch"),
    (tensor([1, 1, 8, 8], ONES, "BYTES"), 422, "unsupported_datatype"),
    (tensor([1, 1, 8, 8], [*ONES[:-1], "x"]), 422, "invalid_data"),
    (tensor([1, 1, 8, 8], [*ONES[:-1], [1, 2]]), 422, "invalid_data"),
    (tensor([1, 1, 8, 8], [*ONES[:-1], 2.0]), 422, "out_of_bounds"),
    (tensor([1, 1, 8, 8], [*ONES[:-1], -0.1]), 422, "out_of_bounds"),
    (tensor([1, 1, 8, 8], ONES, "INT8"), 422, "dtype_mismatch"),
    (tensor([1, 1, 8, 8], [1e39, *ONES[1:]]).replace("1e+39", "1e39"), 422, "dtype_mismatch"),
    (tensor([0, 1, 8, 8], []), 422, "empty_batch"),
    (tensor([1000, 1, 8, 8], []), 413, "batch_too_large"),
    (tensor([1, -1, 8, 8], ONES), 422, "invalid_shape"),
]


@pytest.mark.parametrize(("content", "status", "code"), CASES, ids=[c[2] for c in CASES])
def test_bad_bodies_are_refused(shared: Running, client_key: str, content, status, code) -> None:  # type: ignore[no-untyped-def]
    response = post(shared, client_key, content)
    assert response.status_code == status, response.text
    assert response.json()["error"]["code"] == code
    assert response.json()["error"]["message"]


def test_nested_data_in_the_declared_shape_is_accepted(shared: Running, client_key: str) -> None:
    nested = np.full((1, 1, 8, 8), 0.25).tolist()
    response = post(shared, client_key, tensor([1, 1, 8, 8], nested))
    assert response.status_code == 200, response.text


def test_a_100_mb_body_is_refused_and_the_server_stays_up(shared: Running, client_key: str) -> None:
    big = b"[" + b"0," * (50 * 1024 * 1024) + b"0]"
    response = post(shared, client_key, big)
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "body_too_large"

    def chunks():  # type: ignore[no-untyped-def]
        for _ in range(100):
            yield b" " * (1024 * 1024)

    with shared.client(client_key) as client:
        streamed = client.post(
            INFER, content=chunks(), headers={"Content-Type": "application/json"}
        )
    assert streamed.status_code == 413
    assert shared.client().get("/v2/health/live").json() == {"live": True}
    assert post(shared, client_key, json.dumps(infer_body())).status_code == 200


def test_unauthenticated_clients_cannot_make_the_server_read_a_body(shared: Running) -> None:
    with shared.client() as client:
        response = client.post(INFER, content=b"[" * 10_000)
    assert response.status_code == 401


def test_depth_check_ignores_brackets_inside_strings() -> None:
    check_depth(json.dumps({"id": "[" * 1000}).encode(), 4)
    with pytest.raises(Rejected) as exc:
        check_depth(b'{"a": [[[[[1]]]]]}', 4)
    assert exc.value.code == "json_too_deep"


def test_parse_returns_float32_batch_of_the_model_shape() -> None:
    payload = parse_json(tensor([2, 1, 8, 8], [0.5] * 128).encode(), 32)
    x, request_id = parse_infer_request(payload, (1, 8, 8), (0.0, 1.0), 4)
    assert x.shape == (2, 1, 8, 8) and x.dtype == np.float32 and request_id is None
