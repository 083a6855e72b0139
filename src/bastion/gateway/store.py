"""The gateway's shared state tables (keys, MFA, deployments, LLM reviews) behind SQLAlchemy.

SQLite in the state directory by default; any SQLAlchemy URL (PostgreSQL through
psycopg) when several replicas must share it.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import tempfile
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Engine,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    create_engine,
    event,
)

from bastion.core.errors import ConfigError

metadata = MetaData()

api_keys = Table(
    "bastion_api_keys",
    metadata,
    Column("key_id", String(32), primary_key=True),
    Column("digest", String(64), nullable=False),
    Column("name", String(200), nullable=False),
    Column("role", String(16), nullable=False),
    Column("tenant", String(200), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=True),
    Column("revoked_at", Float, nullable=True),
    Column("mfa_secret", LargeBinary, nullable=True),
    Column("mfa_last_step", BigInteger, nullable=False, default=0),
    Column("mfa_failures", Integer, nullable=False, default=0),
    Column("mfa_locked_until", Float, nullable=False, default=0.0),
)

deployments = Table(
    "bastion_deployments",
    metadata,
    Column("model", String(64), primary_key=True),
    Column("variant", String(64), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("spec", Text, nullable=False),
    Column("signature", Text, nullable=True),
    Column("digest", String(64), nullable=False),
    Column("signed", Boolean, nullable=False),
    Column("weight", Float, nullable=False, default=0.0),
    Column("registered_at", Float, nullable=False),
    Column("registered_by", String(32), nullable=False),
)

# Requests the LLM guard proxy holds for human review (see `bastion.llm.proxy.ReviewQueue`).
# `sealed` is the request body and PII mapping, AES-GCM encrypted under the server secret.
llm_reviews = Table(
    "bastion_llm_reviews",
    metadata,
    Column("review_id", String(32), primary_key=True),
    Column("tenant", String(200), nullable=False),
    Column("key_id", String(32), nullable=True),
    Column("sealed", LargeBinary, nullable=False),
    Column("verdict", Text, nullable=False),
    Column("created", Float, nullable=False),
    Column("expires", Float, nullable=False),
    Column("status", String(16), nullable=False),
    Column("decided_by", String(32), nullable=True),
)


def gateway_dir(state_dir: Path) -> Path:
    """Where the gateway keeps its files inside the state directory."""
    return state_dir / "gateway"


def default_store_url(state_dir: Path) -> str:
    return f"sqlite:///{gateway_dir(state_dir) / 'gateway.db'}"


def open_engine(url: str | None, state_dir: Path) -> Engine:
    """An engine for `url` (or the state-dir SQLite file) with the tables created."""
    if url is None:
        gateway_dir(state_dir).mkdir(parents=True, exist_ok=True)
        url = default_store_url(state_dir)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

        @event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.close()

    elif url.startswith("postgresql"):
        engine = create_engine(
            url, pool_pre_ping=True, pool_size=5, connect_args={"connect_timeout": 3}
        )
    else:
        raise ConfigError(
            f"unsupported store URL {url!r}", fix="use sqlite:///PATH or postgresql+psycopg://..."
        )
    with contextlib.suppress(Exception):
        # Unreachable stores are reported per request (503) and retried, not fatal at start-up.
        ensure_tables(engine)
    return engine


_READY: weakref.WeakSet[Engine] = weakref.WeakSet()


def ensure_tables(engine: Engine) -> None:
    """Create the tables once per engine (idempotent; retried until the store is reachable)."""
    if engine in _READY:
        return
    metadata.create_all(engine)
    _READY.add(engine)


def server_secret(state_dir: Path, secret_file: Path | None = None) -> bytes:
    """The server-side HMAC secret: read it, or create it once (race-free across processes)."""
    path = secret_file or gateway_dir(state_dir) / "server.secret"
    if path.exists():
        data = path.read_bytes()
        if len(data) < 32:
            raise ConfigError(
                f"{path} holds fewer than 32 bytes", fix="delete it to generate a new secret"
            )
        return data
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".secret.")
    try:
        os.write(fd, secrets.token_bytes(32))
        os.fsync(fd)
        os.close(fd)
        os.chmod(tmp, 0o600)
        with contextlib.suppress(FileExistsError):
            os.link(tmp, path)  # fails if another process won the race; then use theirs
    finally:
        os.unlink(tmp)
    return path.read_bytes()
