"""`bastion serve`: the security gateway in front of one or more models."""

from __future__ import annotations

from pathlib import Path

import typer


def register(app: typer.Typer) -> None:
    app.command("serve")(serve_command)


def serve_command(
    models: list[str] = typer.Argument(
        None, help="Models as [NAME=]SPEC (builtin:NAME or a model file)."
    ),
    config: Path | None = typer.Option(None, "--config", help="The gateway's TOML configuration."),
    host: str | None = typer.Option(
        None, "--host", help="Interface to listen on (default 127.0.0.1)."
    ),
    port: int | None = typer.Option(None, "--port", help="Port to listen on (default 8000)."),
    workers: int | None = typer.Option(None, "--workers", help="Worker processes."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="TLS certificate (PEM)."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="TLS private key (PEM)."),
    client_ca: Path | None = typer.Option(
        None, "--client-ca", help="Require client certificates from this CA."
    ),
    tenant: str = typer.Option(
        "default", "--tenant", help="Tenant owning the models given as arguments."
    ),
    state_dir: Path | None = typer.Option(
        None, "--state-dir", help="State directory (default: BASTION_HOME)."
    ),
    llm_upstream: str | None = typer.Option(
        None,
        "--llm-upstream",
        help="Guard this OpenAI-compatible endpoint at /v1/chat/completions ([llm] section).",
    ),
) -> None:
    """Serve models over the Open Inference Protocol v2 with auth, limits, validation and audit."""
    import json
    import os

    from bastion.gateway.config import load_serve_config
    from bastion.gateway.server import GATEWAY_FACTORY, model_entries, run
    from bastion.llm.proxy import GUARDED_FACTORY, guarded_config_schema

    overrides = {
        "host": host,
        "port": port,
        "workers": workers,
        "tls_cert": tls_cert,
        "tls_key": tls_key,
        "client_ca": client_ca,
    }
    for key, value in overrides.items():
        if value is not None:
            # Environment overrides reach the worker processes, which re-read the config.
            os.environ[f"BASTION_SERVER__{key.upper()}"] = str(value)
    if llm_upstream is not None:
        os.environ["BASTION_LLM__UPSTREAM"] = json.dumps(llm_upstream)
    settings = load_serve_config(config, guarded_config_schema())
    factory = GUARDED_FACTORY if settings.llm is not None else GATEWAY_FACTORY
    if settings.llm is not None:
        from bastion.llm.embed import require_llm_extra

        require_llm_extra()  # here, not in a worker: a clear error and exit 2
    run(config, settings, model_entries(models or [], tenant), state_dir, factory)
