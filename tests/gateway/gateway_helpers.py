"""Real gateway servers for the tests: uvicorn on 127.0.0.1, a random free port, in a thread."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pyotp

from bastion.gateway import create_app
from bastion.gateway.app import Gateway
from bastion.gateway.config import ModelEntry, ServeConfig

PG = "postgresql+psycopg://postgres@127.0.0.1:{port}/test"
MODEL = "digits-cnn"
INFER = f"/v2/models/{MODEL}/infer"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def pg_url(port: int, schema: str) -> str:
    """The test PostgreSQL (or a proxy in front of it on `port`), confined to `schema`."""
    return PG.format(port=port) + f"?options=-csearch_path%3D{schema}"


def infer_body(batch: int = 1, seed: int = 0, request_id: str | None = None) -> dict[str, Any]:
    x = np.random.default_rng(seed).random((batch, 1, 8, 8))
    body: dict[str, Any] = {
        "inputs": [
            {
                "name": "input",
                "shape": [batch, 1, 8, 8],
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }
    if request_id is not None:
        body["id"] = request_id
    return body


@dataclass
class Running:
    """A gateway running in this process: its URL, its state and helpers to make keys."""

    url: str
    gateway: Gateway
    state_dir: Path
    server: Any
    thread: threading.Thread

    def client(self, key: str | None = None, otp: str | None = None) -> httpx.Client:
        headers = {}
        if key is not None:
            headers["Authorization"] = f"Bearer {key}"
        if otp is not None:
            headers["X-Bastion-OTP"] = otp
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)

    def key(self, role: str = "client", tenant: str = "default", **kw: Any) -> str:
        raw, _ = self.gateway.keys.create(f"test-{role}", role, tenant, **kw)
        return raw

    def mfa_key(self, role: str = "admin", tenant: str = "default") -> tuple[str, pyotp.TOTP]:
        raw = self.key(role, tenant)
        secret = self.gateway.keys.enrol_mfa(raw.split("_")[1])
        return raw, pyotp.TOTP(secret)

    def audit(self, index: int) -> dict[str, Any]:
        log = self.gateway.audit_log
        return log.record(index)  # type: ignore[no-any-return]

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def start(config: ServeConfig, state_dir: Path) -> Running:
    import uvicorn

    from bastion.gateway.server import tls_options

    app = create_app(config, state_dir)
    port = free_port()
    options: dict[str, Any] = {"host": "127.0.0.1", "port": port, "log_level": "warning"}
    options.update(lifespan="on", proxy_headers=False, **tls_options(config.server))
    server = uvicorn.Server(uvicorn.Config(app, **options))

    def run() -> None:
        asyncio.run(server.serve())

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("gateway did not start")
        time.sleep(0.02)
    scheme = "https" if config.server.tls_cert else "http"
    return Running(f"{scheme}://127.0.0.1:{port}", app.state.gateway, state_dir, server, thread)


def make_config(**sections: dict[str, Any]) -> ServeConfig:
    """A test config: digits-cnn, generous limits unless overridden."""
    data: dict[str, Any] = {
        "limits": {"per_key": ["10000/second"], "per_ip": ["10000/second"]},
        "auth": {"key_cache_seconds": 0},
        "models": [ModelEntry(name=MODEL, spec=f"builtin:{MODEL}").model_dump()],
    }
    for name, values in sections.items():
        data[name] = {**data.get(name, {}), **values} if isinstance(values, dict) else values
    return ServeConfig.model_validate(data)


class FreshCodes:
    """TOTP codes computed when used, for strictly increasing steps inside the accepted window.

    Codes fixed in advance expire if the test crosses a 30 s step boundary; each code here is
    usable once (replay protection) and valid when sent.
    """

    def __init__(self, totp: pyotp.TOTP) -> None:
        self.totp = totp
        self.last: int | None = None

    def __getitem__(self, _: int) -> str:
        while True:
            now = int(time.time()) // 30
            step = now - 1 if self.last is None else max(self.last + 1, now - 1)
            if step <= now + 1:
                break
            time.sleep(1)
        self.last = step
        return str(self.totp.at(step * 30))
