"""Rate limits: several windows, per key and per IP, memory and Redis; 429 with headers."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
import redis
from gateway_helpers import INFER, infer_body


@pytest.fixture
def redis_prefix() -> Iterator[str]:
    """A Redis key prefix of this test's own; its keys are deleted afterwards."""
    prefix = f"bastion-test-{uuid.uuid4().hex}"
    yield prefix
    conn = redis.Redis(host="127.0.0.1", port=6379)
    for key in conn.scan_iter(f"{prefix}*"):
        conn.delete(key)
    conn.close()


def test_per_key_limit_with_several_windows(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve(limits={"per_key": ["100/second", "3/hour"]})
    key, other = gw.key(), gw.key()
    with gw.client(key) as client:
        statuses = [client.post(INFER, json=infer_body()) for _ in range(4)]
    assert [r.status_code for r in statuses] == [200, 200, 200, 429]
    first, blocked = statuses[0], statuses[-1]
    assert (
        first.headers["RateLimit-Limit"] == "100" and first.headers["RateLimit-Remaining"] == "99"
    )
    assert blocked.json()["error"]["code"] == "rate_limited"
    assert 0 < int(blocked.headers["Retry-After"]) <= 3600
    assert (
        blocked.headers["RateLimit-Limit"] == "3" and blocked.headers["RateLimit-Remaining"] == "0"
    )
    assert "3;w=3600" in blocked.headers["RateLimit-Policy"]
    record = gw.audit(int(blocked.headers["Bastion-Audit-Index"]))
    assert record["code"] == "rate_limited" and record["decision"] == "refuse"
    # Another key has its own budget.
    assert gw.client(other).post(INFER, json=infer_body()).status_code == 200


def test_per_ip_limit_applies_before_authentication(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve(limits={"per_ip": ["2/minute"]})
    with gw.client() as client:
        codes = [client.post(INFER, json=infer_body()).json()["error"]["code"] for _ in range(3)]
    assert codes == ["missing_key", "missing_key", "rate_limited"]
    key = gw.key()
    assert gw.client(key).post(INFER, json=infer_body()).status_code == 429


def test_headers_describe_the_last_limit_passed(serve) -> None:  # type: ignore[no-untyped-def]
    gw = serve(limits={"per_ip": ["50/minute"], "per_key": ["7/minute", "100/day"]})
    with gw.client() as anonymous:
        refused = anonymous.post(INFER, json=infer_body())
    assert refused.status_code == 401  # passed the IP limit, refused by authentication
    assert refused.headers["RateLimit-Limit"] == "50"
    assert refused.headers["RateLimit-Remaining"] == "49"
    with gw.client(gw.key()) as client:
        allowed = client.post(INFER, json=infer_body())
    assert allowed.status_code == 200
    assert allowed.headers["RateLimit-Limit"] == "7"
    assert allowed.headers["RateLimit-Remaining"] == "6"
    assert allowed.headers["RateLimit-Policy"] == "7;w=60, 100;w=86400"


def test_redis_limits_are_shared_between_gateways(serve, redis_prefix: str, tmp_path) -> None:  # type: ignore[no-untyped-def]
    limits = {
        "storage": "async+redis://127.0.0.1:6379",
        "key_prefix": redis_prefix,
        "per_key": ["5/minute"],
    }
    state = tmp_path / "one-state"
    a = serve(state_dir=state, limits=limits)
    b = serve(state_dir=state, limits=limits)
    key = a.key()
    codes = []
    for i in range(8):
        gw = a if i % 2 == 0 else b
        codes.append(gw.client(key).post(INFER, json=infer_body()).status_code)
    assert codes.count(200) == 5 and codes.count(429) == 3
    assert redis.Redis(host="127.0.0.1").keys(f"{redis_prefix}*")
