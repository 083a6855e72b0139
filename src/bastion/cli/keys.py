"""`bastion keys`: create, list, revoke and rotate gateway API keys; enrol TOTP."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from bastion.gateway.keystore import KeyStore

keys_app = typer.Typer(
    help="Manage the gateway's API keys and their TOTP second factor.", no_args_is_help=True
)

STATE_DIR = typer.Option(None, "--state-dir", help="State directory (default: BASTION_HOME).")
CONFIG = typer.Option(
    None, "--config", help="Gateway TOML (for [store] url and [auth] secret_file)."
)


def register(app: typer.Typer) -> None:
    app.add_typer(keys_app, name="keys")


def _store(config: Path | None, state_dir: Path | None) -> KeyStore:
    from bastion.core.paths import data_dir
    from bastion.gateway.config import load_serve_config
    from bastion.gateway.keystore import KeyStore
    from bastion.gateway.store import ensure_tables, open_engine, server_secret

    cfg = load_serve_config(config)
    root = data_dir(state_dir or cfg.server.state_dir)
    engine = open_engine(cfg.store.url, root)
    try:
        ensure_tables(engine)
    except Exception as exc:
        from bastion.core.errors import BastionError

        raise BastionError(
            f"the key store is unreachable: {str(exc).splitlines()[0]}", fix="check [store] url"
        ) from exc
    return KeyStore(engine, server_secret(root, cfg.auth.secret_file), cache_seconds=0)


def parse_expiry(text: str) -> float:
    """`30d`, `12h`, `15m`, `90s` from now, or an ISO 8601 date/time (UTC if no zone)."""
    import time
    from datetime import UTC, datetime

    from bastion.core.errors import UsageError

    units = {"s": 1, "m": 60, "h": 3600, "d": 86400}
    if text[-1:] in units and text[:-1].isdigit():
        return time.time() + int(text[:-1]) * units[text[-1]]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise UsageError(
            f"cannot read expiry {text!r}", fix="use 30d, 12h, 15m, 90s or an ISO date"
        ) from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    if moment.timestamp() <= time.time():
        raise UsageError(f"expiry {text} is in the past", fix="give a future time")
    return moment.timestamp()


@keys_app.command("create")
def create(
    name: str = typer.Option(..., "--name", help="Who or what the key is for."),
    role: str = typer.Option(
        "client",
        "--role",
        help="client (infer), operator (metrics, deployments), admin (keys, config).",
    ),
    tenant: str = typer.Option("default", "--tenant", help="Tenant the key belongs to."),
    expires: str | None = typer.Option(
        None, "--expires", help="Expiry: 30d, 12h, 15m or an ISO date."
    ),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Create a key and print its secret once (it is stored only as a keyed hash)."""
    store = _store(config, state_dir)
    raw, info = store.create(name, role, tenant, parse_expiry(expires) if expires else None)
    typer.echo(f"key id: {info.key_id}  role: {info.role}  tenant: {info.tenant}", err=True)
    typer.echo("the secret below is shown once; store it now", err=True)
    typer.echo(raw)


@keys_app.command("list")
def list_keys(
    tenant: str | None = typer.Option(None, "--tenant", help="Only this tenant's keys."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """List keys (never their secrets)."""
    import json
    import time
    from datetime import UTC, datetime

    now = time.time()
    keys = _store(config, state_dir).list(tenant)
    if as_json:
        typer.echo(json.dumps([{**k.__dict__, "status": k.status(now)} for k in keys], indent=2))
        return

    def when(t: float | None) -> str:
        return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M") if t else "-"

    typer.echo(
        f"{'KEY ID':<17} {'ROLE':<9} {'TENANT':<12} {'STATUS':<8} {'MFA':<4} {'EXPIRES':<17} NAME"
    )
    for k in keys:
        mfa = "yes" if k.mfa_enrolled else "no"
        expiry, status = when(k.expires_at), k.status(now)
        typer.echo(
            f"{k.key_id:<17} {k.role:<9} {k.tenant:<12} {status:<8} {mfa:<4} {expiry:<17} {k.name}"
        )


@keys_app.command("revoke")
def revoke(
    key_id: str = typer.Argument(..., help="The key id (from `bastion keys list`)."),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Revoke a key now."""
    info = _store(config, state_dir).revoke(key_id)
    typer.echo(f"revoked {info.key_id} ({info.name})")


@keys_app.command("rotate")
def rotate(
    key_id: str = typer.Argument(..., help="The key id to replace."),
    grace: int = typer.Option(0, "--grace", help="Seconds the old key keeps working."),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Replace a key with a new one (same name, role, tenant, TOTP); print the new secret once."""
    raw, info = _store(config, state_dir).rotate(key_id, grace)
    typer.echo(f"new key id: {info.key_id} replaces {key_id} (old key ends in {grace} s)", err=True)
    typer.echo(raw)


@keys_app.command("mfa-enroll")
def mfa_enroll(
    key_id: str = typer.Argument(..., help="The key id to enrol."),
    qr: Path | None = typer.Option(
        None, "--qr", help="Write the enrolment QR code to this PNG file."
    ),
    issuer: str = typer.Option(
        "Bastion", "--issuer", help="Issuer name shown in the authenticator app."
    ),
    config: Path | None = CONFIG,
    state_dir: Path | None = STATE_DIR,
) -> None:
    """Enrol a TOTP second factor: print the otpauth URI, optionally write a QR code PNG."""
    import pyotp

    store = _store(config, state_dir)
    info = store.get(key_id)
    secret = store.enrol_mfa(key_id)
    uri = pyotp.TOTP(secret).provisioning_uri(
        name=f"{info.name} ({info.key_id})", issuer_name=issuer
    )
    if qr is not None:
        import io

        import qrcode
        import qrcode.image.pil

        from bastion.core.fs import write_bytes_atomic

        buffer = io.BytesIO()
        qrcode.make(uri, image_factory=qrcode.image.pil.PilImage).save(buffer, format="PNG")
        write_bytes_atomic(qr, buffer.getvalue())
        typer.echo(f"QR code written to {qr}", err=True)
    typer.echo(uri)
