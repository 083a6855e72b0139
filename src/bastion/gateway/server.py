"""Run the gateway under uvicorn: one process, or N workers built from the environment."""

from __future__ import annotations

import json
import os
import ssl
import tempfile
from pathlib import Path

from fastapi import FastAPI

from bastion.core.errors import UsageError
from bastion.gateway.config import ModelEntry, S, ServeConfig, ServerConfig, load_serve_config

ENV_SPEC = "BASTION_SERVE_SPEC"
GATEWAY_FACTORY = "bastion.gateway.server:app_from_env"


def model_entries(specs: list[str], tenant: str) -> list[ModelEntry]:
    """`[NAME=]SPEC` arguments as model entries; the name defaults to the built-in or file stem."""
    entries = []
    for item in specs:
        name, sep, spec = item.partition("=")
        if not sep:
            spec = item
            name = item.removeprefix("builtin:") if item.startswith("builtin:") else Path(item).stem
        entries.append(ModelEntry(name=name, spec=spec, tenant=tenant))
    names = [e.name for e in entries]
    if len(set(names)) != len(names):
        raise UsageError("two models share a name", fix="name them explicitly: NAME=SPEC")
    return entries


def config_from_env(schema: type[S]) -> tuple[S, Path | None]:
    """The configuration and state dir a worker process serves: `run` puts them in the env."""
    spec = json.loads(os.environ[ENV_SPEC])
    config = load_serve_config(spec["config"], schema)
    config.models = [*config.models, *(ModelEntry(**m) for m in spec["models"])]
    return config, Path(spec["state_dir"]) if spec["state_dir"] else None


def app_from_env() -> FastAPI:
    """The uvicorn factory used by worker processes."""
    from bastion.gateway.app import create_app

    return create_app(*config_from_env(ServeConfig))


def tls_options(server: ServerConfig) -> dict[str, object]:
    """uvicorn TLS options: HTTPS from `tls_cert`/`tls_key`; client certs from `client_ca`."""
    if (server.tls_cert is None) != (server.tls_key is None):
        raise UsageError("--tls-cert and --tls-key go together", fix="pass both, or neither")
    if server.client_ca is not None and server.tls_cert is None:
        raise UsageError("--client-ca needs TLS", fix="also pass --tls-cert and --tls-key")
    if server.tls_cert is None:
        return {}
    options: dict[str, object] = {
        "ssl_certfile": str(server.tls_cert),
        "ssl_keyfile": str(server.tls_key),
    }
    if server.client_ca is not None:
        options.update(ssl_ca_certs=str(server.client_ca), ssl_cert_reqs=ssl.CERT_REQUIRED)
    return options


def run(
    config_path: Path | None,
    config: ServeConfig,
    extra_models: list[ModelEntry],
    state_dir: Path | None,
    factory: str = GATEWAY_FACTORY,
) -> None:
    """Serve until interrupted; `factory` names the uvicorn app factory each worker runs."""
    import uvicorn

    server = config.server
    tls = tls_options(server)
    if not config.models and not extra_models and factory == GATEWAY_FACTORY:
        raise UsageError(
            "no model to serve", fix="pass MODEL arguments or [[models]] in the config"
        )
    os.environ[ENV_SPEC] = json.dumps(
        {
            "config": str(config_path) if config_path else None,
            "models": [m.model_dump() for m in extra_models],
            "state_dir": str(state_dir) if state_dir else None,
        }
    )
    if server.workers > 1 and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="bastion-metrics-")
    uvicorn.run(
        factory,
        factory=True,
        host=server.host,
        port=server.port,
        workers=server.workers,
        proxy_headers=False,
        server_header=False,
        log_level="warning",
        access_log=False,
        **tls,  # type: ignore[arg-type]
    )
