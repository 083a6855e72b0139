"""Bodies and headers that used to raise past the chain (skipping audit and metrics) now get
a 4xx with a code, every refusal is audited and counted, and an unexpected exception in a
stage becomes a recorded 500; a rotated key inherits its TOTP replay state."""

from __future__ import annotations

import asyncio
import json
import re
from typing import Any

import pytest
from gateway_helpers import INFER, Running

from bastion.gateway.chain import Chain, Context, Rejected


def tensor_text(value: str) -> bytes:
    """A digits-cnn infer body whose first value is the literal `value` (JSON number text)."""
    data = ",".join([value] + ["0.5"] * 63)
    return (
        '{"inputs":[{"name":"input","shape":[1,1,8,8],"datatype":"FP32","data":[' + data + "]}]}"
    ).encode()


def rejections(gw: Running, code: str) -> float:
    text = gw.gateway.metrics.render().decode()
    match = re.search(rf'bastion_rejections_total{{reason="{code}"}} (\S+)', text)
    return float(match.group(1)) if match else 0.0


@pytest.mark.parametrize(
    ("body", "code"),
    [
        (tensor_text("1" + "0" * 400), "number_too_large"),  # np.asarray OverflowError
        (tensor_text("1" * 5000), "number_too_large"),  # json int digit limit ValueError
        (tensor_text("1e999"), "non_finite"),
    ],
)
def test_huge_numbers_are_refused_audited_and_counted(
    shared: Running, body: bytes, code: str
) -> None:
    before = rejections(shared, code)
    with shared.client(shared.key()) as client:
        response = client.post(INFER, content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    assert response.json()["error"]["code"] == code
    record = shared.audit(int(response.headers["Bastion-Audit-Index"]))
    assert record["code"] == code and record["decision"] == "refuse"
    assert rejections(shared, code) == before + 1


@pytest.mark.parametrize("otp", ["é12345".encode(), "١٢٣٤٥٦".encode(), b"12345", b"1234567"])
def test_odd_totp_headers_are_invalid_codes(serve, otp: bytes) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    admin, _ = gw.mfa_key("admin")
    with gw.client(admin) as client:
        response = client.get("/admin/keys", headers={"X-Bastion-OTP": otp})
    assert response.status_code == 401, response.text
    assert response.json()["error"]["code"] == "invalid_totp"
    assert gw.audit(int(response.headers["Bastion-Audit-Index"]))["code"] == "invalid_totp"
    assert rejections(gw, "invalid_totp") == 1


def test_an_unexpected_stage_error_is_a_recorded_500() -> None:
    seen: list[tuple[int, str]] = []

    class Broken:
        name = "broken"

        async def __call__(self, ctx: Context) -> None:
            raise KeyError("surprise")

    async def record(ctx: Context) -> None:
        seen.append((ctx.status, ctx.code))

    chain = Chain([Broken()], [record, record])
    ctx = Context(action="infer", client_ip="127.0.0.1", headers={})
    with pytest.raises(Rejected) as raised:
        asyncio.run(chain.run(ctx))
    assert (raised.value.status, raised.value.code) == (500, "internal_error")
    assert "surprise" not in json.dumps(raised.value.body())
    assert seen == [(500, "internal_error")] * 2


def test_a_rotated_key_cannot_replay_the_code_that_rotated_it(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve()
    admin, totp = gw.mfa_key("admin")
    code = totp.now()
    rotated = gw.client(admin, code).post(f"/admin/keys/{admin.split('_')[1]}/rotate", json={})
    assert rotated.status_code == 200, rotated.text
    replay = gw.client(rotated.json()["key"], code).get("/admin/keys")
    assert replay.status_code == 401
    body: dict[str, Any] = replay.json()
    assert body["error"]["code"] == "totp_replayed"


def test_blank_key_names_and_rotating_a_revoked_key_are_client_errors(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve(auth={"mfa_roles": []})
    admin = gw.key("admin")
    blank = gw.client(admin).post("/admin/keys", json={"name": "   ", "role": "client"})
    assert blank.status_code == 422 and blank.json()["error"]["code"] == "invalid_request"
    victim = gw.key()
    key_id = victim.split("_")[1]
    assert gw.client(admin).delete(f"/admin/keys/{key_id}").status_code == 200
    again = gw.client(admin).post(f"/admin/keys/{key_id}/rotate", json={})
    assert again.status_code == 409 and again.json()["error"]["code"] == "key_not_active"
    assert gw.audit(int(again.headers["Bastion-Audit-Index"]))["code"] == "key_not_active"
