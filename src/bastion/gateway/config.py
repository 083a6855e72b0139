"""The `bastion serve` configuration: one pydantic section per concern, read from TOML + env."""

from __future__ import annotations

from pathlib import Path
from typing import Literal, TypeVar, overload

from pydantic import Field

from bastion.core.config import Section, load_config
from bastion.gateway.defence_config import DefencesConfig

Role = Literal["client", "operator", "admin"]
DEFAULT_STAGES = ["ip_limit", "authenticate", "key_limit", "validate", "route", "predict"]


def _privileged_roles() -> list[Role]:
    return ["operator", "admin"]


class ServerConfig(Section):
    """Where and how uvicorn listens."""

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)
    tls_cert: Path | None = None
    tls_key: Path | None = None
    client_ca: Path | None = None
    state_dir: Path | None = None


class AuthConfig(Section):
    """API keys and the TOTP second factor."""

    enabled: bool = True
    key_cache_seconds: float = Field(default=1.0, ge=0)
    mfa_roles: list[Role] = Field(default_factory=_privileged_roles)
    mfa_max_failures: int = Field(default=5, ge=1)
    mfa_lockout_seconds: int = Field(default=300, ge=1)
    secret_file: Path | None = None


class StoreConfig(Section):
    """The key, MFA and deployment store: SQLite in the state dir unless a URL is given."""

    url: str | None = None


class LimitsConfig(Section):
    """Rate limits (`limits` syntax) per API key and per client IP."""

    enabled: bool = True
    storage: str = "memory://"
    strategy: Literal["moving-window", "fixed-window", "sliding-window-counter"] = (
        "sliding-window-counter"
    )
    key_prefix: str = "bastion"
    per_key: list[str] = Field(default_factory=lambda: ["20/second", "10000/day"])
    per_ip: list[str] = Field(default_factory=lambda: ["100/second"])
    fail_open: bool = False


class ValidationConfig(Section):
    """Bounds on what a request may contain."""

    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    max_json_depth: int = Field(default=32, ge=2)
    max_batch: int = Field(default=256, ge=1)


class AuditConfig(Section):
    """The tamper-evident audit log: SQLite in the state dir unless a URL is given."""

    enabled: bool = True
    url: str | None = None
    fail_open: bool = False
    # "full": a committed record survives power loss (fsync per group commit);
    # "process": it survives a crash of the gateway (kill -9), not of the machine.
    durability: Literal["full", "process"] = "full"


class DeployConfig(Section):
    """Deployment control: signed versions, blue-green and canary."""

    require_signed: bool = False
    trusted_keys: list[Path] = Field(default_factory=list)
    refresh_seconds: float = Field(default=2.0, ge=0)
    # Versions registered through the admin API must be files (or signed bundle
    # directories) inside this directory; default `<state_dir>/models`.
    models_root: Path | None = None


class MetricsConfig(Section):
    """The Prometheus endpoint."""

    enabled: bool = True
    require_key: bool = True


class ChainConfig(Section):
    """Which request stages run, in order."""

    stages: list[str] = Field(default_factory=lambda: list(DEFAULT_STAGES))


class ModelEntry(Section):
    """One served model."""

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    spec: str
    tenant: str = "default"
    variant: str = "v1"


class ServeConfig(Section):
    """Everything `bastion serve` reads."""

    server: ServerConfig = ServerConfig()
    auth: AuthConfig = AuthConfig()
    store: StoreConfig = StoreConfig()
    limits: LimitsConfig = LimitsConfig()
    validation: ValidationConfig = ValidationConfig()
    audit: AuditConfig = AuditConfig()
    deploy: DeployConfig = DeployConfig()
    metrics: MetricsConfig = MetricsConfig()
    chain: ChainConfig = ChainConfig()
    defences: DefencesConfig = DefencesConfig()
    models: list[ModelEntry] = Field(default_factory=list)


S = TypeVar("S", bound=ServeConfig)


@overload
def load_serve_config(path: str | Path | None = None) -> ServeConfig: ...


@overload
def load_serve_config(path: str | Path | None, schema: type[S]) -> S: ...


def load_serve_config(
    path: str | Path | None = None, schema: type[ServeConfig] = ServeConfig
) -> ServeConfig:
    """Read the gateway configuration from `path` (optional) and `BASTION_*` variables.

    Services mounted on the gateway (the LLM guard proxy) extend `ServeConfig` with their
    own sections and pass the extended schema.
    """
    return load_config(path, schema=schema)
