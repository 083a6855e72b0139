"""`kill -9` under load: after restart the audit log verifies and holds every 2xx request."""

from __future__ import annotations

import subprocess
import threading
import time
from pathlib import Path

import httpx
import numpy as np
import pytest
from gateway_procs import BASTION, ServeProcess, create_key, env_for

pytestmark = pytest.mark.slow


def test_kill_9_loses_no_acknowledged_request(tmp_path: Path) -> None:
    from bastion.audit import open_log

    home = tmp_path / "home"
    key = create_key(home)
    server = ServeProcess(home)
    acknowledged: dict[str, int] = {}
    lock = threading.Lock()
    stop = threading.Event()
    x = np.random.default_rng(0).random((1, 1, 8, 8)).ravel().tolist()

    def load(worker: int) -> None:
        with httpx.Client(headers={"Authorization": f"Bearer {key}"}, timeout=10) as client:
            n = 0
            while not stop.is_set():
                request_id = f"w{worker}-{n}"
                n += 1
                payload = {
                    "id": request_id,
                    "inputs": [
                        {"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x}
                    ],
                }
                try:
                    r = client.post(f"{server.url}/v2/models/digits-cnn/infer", json=payload)
                except httpx.HTTPError:
                    return
                if r.status_code == 200:
                    with lock:
                        acknowledged[request_id] = int(r.headers["Bastion-Audit-Index"])

    threads = [threading.Thread(target=load, args=(w,)) for w in range(8)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 60
    while len(acknowledged) < 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    server.kill()
    stop.set()
    for t in threads:
        t.join(timeout=30)
    assert len(acknowledged) >= 200

    restarted = ServeProcess(home)
    try:
        r = httpx.post(
            f"{restarted.url}/v2/models/digits-cnn/infer",
            json={
                "inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x}]
            },
            headers={"Authorization": f"Bearer {key}"},
        )
        assert r.status_code == 200
    finally:
        restarted.stop()
    verify = subprocess.run(
        [BASTION, "audit", "verify"], env=env_for(home), capture_output=True, text=True
    )
    assert verify.returncode == 0, verify.stdout + verify.stderr
    log = open_log(None, state_dir=home)
    try:
        for request_id, index in acknowledged.items():
            assert log.record(index)["request_id"] == request_id
    finally:
        log.close()
