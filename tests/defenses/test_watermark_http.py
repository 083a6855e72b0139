"""Watermark verification through `load_model("http://...")`: a real OIP server on 127.0.0.1.

The server is a minimal KServe OIP v2 endpoint (metadata + infer) around the suspect
model, as a thief's API would expose it; the verifier sees only HTTP answers.
"""

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
import uvicorn
from fastapi import FastAPI, Request

from bastion.core.loading import load_model
from bastion.core.model import Model
from bastion.defenses.watermark import embed, verify
from bastion.zoo import build, entry

KEY = bytes(range(100, 132))


def serve(model: Model) -> Iterator[str]:
    app = FastAPI()

    @app.get("/v2/models/m")
    def metadata() -> dict[str, Any]:
        return {
            "name": "m",
            "inputs": [{"name": "input", "shape": [-1, *model.input_shape], "datatype": "FP32"}],
            "outputs": [{"name": "probs", "shape": [-1, model.n_classes], "datatype": "FP32"}],
            "parameters": {"input_bounds": list(model.input_bounds or (0.0, 1.0))},
        }

    @app.post("/v2/models/m/infer")
    async def infer(request: Request) -> dict[str, Any]:
        spec = (await request.json())["inputs"][0]
        x = np.asarray(spec["data"], dtype=np.float32).reshape(spec["shape"])
        probs = model.predict_proba(x)
        return {
            "outputs": [
                {
                    "name": "probs",
                    "shape": list(probs.shape),
                    "datatype": "FP32",
                    "data": probs.ravel().tolist(),
                }
            ]
        }

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started and time.monotonic() < deadline:
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}/v2/models/m"
    finally:
        server.should_exit = True
        thread.join(timeout=30)


@pytest.fixture(scope="module")
def marked() -> Model:
    train, _ = entry("digits-cnn").load_data()
    return embed(build("digits-cnn"), train, KEY, epochs=6, seed=0)


@pytest.mark.timeout(300)
def test_verify_over_http_matches_local_verdict(marked: Model) -> None:
    for url in serve(marked):
        remote = load_model(url)
        over_http = verify(remote, KEY)
        local = verify(marked, KEY)
        assert over_http.matches == local.matches
        assert over_http.verified and over_http.p_value < 1e-6
        assert verify(remote, bytes(range(1, 33))).p_value > 0.01
