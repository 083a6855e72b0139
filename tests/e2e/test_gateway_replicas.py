"""Two `bastion serve` processes sharing Redis and PostgreSQL behave as one gateway."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
import redis
import sqlalchemy as sa
from gateway_procs import ServeProcess, create_key

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
pytestmark = pytest.mark.slow


@pytest.fixture
def shared_services() -> Iterator[tuple[str, str]]:
    """A PostgreSQL schema and a Redis key prefix of this test's own; both removed afterwards."""
    schema = f"bastion_e2e_{uuid.uuid4().hex[:12]}"
    prefix = f"bastion-e2e-{uuid.uuid4().hex}"
    engine = sa.create_engine(PG)
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    yield f"{PG}?options=-csearch_path%3D{schema}", prefix
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    engine.dispose()
    client = redis.Redis(host="127.0.0.1")
    for key in client.scan_iter(f"{prefix}*"):
        client.delete(key)


def body(i: int) -> dict:  # type: ignore[type-arg]
    x = np.random.default_rng(i).random((1, 1, 8, 8))
    return {
        "id": f"req-{i}",
        "inputs": [
            {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x.ravel().tolist()}
        ],
    }


def test_two_replicas_share_one_rate_limit_and_one_audit_log(
    tmp_path: Path, shared_services
) -> None:  # type: ignore[no-untyped-def]
    from bastion.audit import open_log

    url, prefix = shared_services
    config = tmp_path / "bastion.toml"
    config.write_text(
        f'[store]\nurl = "{url}"\n[audit]\nurl = "{url}"\n'
        f'[limits]\nstorage = "async+redis://127.0.0.1:6379"\nkey_prefix = "{prefix}"\n'
        'per_key = ["10/minute"]\nper_ip = ["1000/second"]\n'
    )
    home = tmp_path / "home"
    key = create_key(home, config)
    a, b = ServeProcess(home, config), ServeProcess(home, config)
    try:
        statuses, indexes = [], {}
        for i in range(14):
            replica = a if i % 2 == 0 else b
            r = httpx.post(
                f"{replica.url}/v2/models/digits-cnn/infer",
                json=body(i),
                headers={"Authorization": f"Bearer {key}"},
            )
            statuses.append(r.status_code)
            indexes[f"req-{i}"] = (r.status_code, int(r.headers["Bastion-Audit-Index"]))
        assert statuses.count(200) == 10 and statuses.count(429) == 4
        assert statuses[:10] == [200] * 10
    finally:
        a.stop()
        b.stop()
    log = open_log(url, state_dir=home)
    try:
        assert log.verify().ok
        assert len({index for _, index in indexes.values()}) == 14
        for request_id, (status, index) in indexes.items():
            record = log.record(index)
            assert record["status"] == status
            if status == 200:
                assert record["request_id"] == request_id
    finally:
        log.close()
