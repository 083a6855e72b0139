"""`bastion serve` as a real subprocess for end-to-end tests."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

BASTION = str(Path(sys.executable).with_name("bastion"))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def env_for(home: Path) -> dict[str, str]:
    from bastion.core.paths import cache_dir

    return {**os.environ, "BASTION_HOME": str(home), "BASTION_CACHE": str(cache_dir())}


class ServeProcess:
    """`bastion serve builtin:digits-cnn` on a free port, waited on until it answers."""

    def __init__(self, home: Path, config: Path | None = None, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [BASTION, "serve", "builtin:digits-cnn", "--port", str(self.port)]
        if config is not None:
            args += ["--config", str(config)]
        self.log = home / f"serve-{self.port}.log"
        home.mkdir(parents=True, exist_ok=True)
        with self.log.open("wb") as out:
            self.proc = subprocess.Popen(
                args, env=env_for(home), stdout=out, stderr=subprocess.STDOUT
            )
        deadline = time.monotonic() + 180
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"bastion serve exited: {self.log.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/v2/health/ready", timeout=2).status_code == 200:
                    return
            if time.monotonic() > deadline:
                self.kill()
                raise RuntimeError("bastion serve did not become ready")
            time.sleep(0.2)

    def kill(self) -> None:
        """SIGKILL: no shutdown handlers run."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.kill()


def create_key(home: Path, config: Path | None = None, role: str = "client") -> str:
    args = [BASTION, "keys", "create", "--name", "e2e", "--role", role]
    if config is not None:
        args += ["--config", str(config)]
    done = subprocess.run(args, env=env_for(home), capture_output=True, text=True, check=True)
    return done.stdout.strip()
