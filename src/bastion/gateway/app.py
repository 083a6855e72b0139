"""The FastAPI app factory: Open Inference Protocol v2, the admin API and /metrics.

Every endpoint runs a `Chain` of stages; the endpoint's own work is its last stage, so
audit and metrics (the finalizers) record allowed and refused requests alike.

The infer endpoint, the hot path, is dispatched straight from ASGI (`GatewayApp`): the
same handler and chain, without the framework's middleware, routing and dependency layers,
which cost as much CPU per request as authentication, limits and audit together.
"""

from __future__ import annotations

import contextlib
import gc
import json
import re
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from starlette.types import Receive, Scope, Send

from bastion import __version__
from bastion.core.errors import BastionError, ConfigError
from bastion.core.paths import data_dir
from bastion.gateway.audit import AuditFinalizer, audit_before_change, open_audit_log
from bastion.gateway.chain import Chain, Context, Finalizer, Rejected, Stage
from bastion.gateway.config import ServeConfig
from bastion.gateway.defence_config import check_chain
from bastion.gateway.deploy import Deployments
from bastion.gateway.keystore import ROLES, KeyStore
from bastion.gateway.metrics import Metrics
from bastion.gateway.ratelimit import RateLimitStage, make_limiter, parse_limits
from bastion.gateway.stages import STAGES, Authenticate, Call, resolve
from bastion.gateway.store import open_engine, server_secret

Handler = Callable[[Context], Awaitable[None]]
Endpoint = Callable[[str, Request], Awaitable[Response]]
INFER_PATH = re.compile(r"/v2/models/([^/]+)/infer")  # what FastAPI's `{model_name}` matches

# The audit writer thread needs the GIL back after every SQLite call (each releases it), and
# with CPython's default 5 ms switch interval it waits up to that long each time the event
# loop is busy: under load a group commit then took ~10x its disk time. 0.5 ms bounds that
# wait; it costs nothing while no other thread wants the GIL.
GIL_SWITCH_INTERVAL_S = 0.0005


class Gateway:
    """The state one gateway process holds: stores, limiter, metrics, chains."""

    def __init__(self, config: ServeConfig, state_dir: Path | None = None) -> None:
        self.config = config
        self.state_dir = data_dir(state_dir or config.server.state_dir)
        self.metrics = Metrics()
        self.engine = open_engine(config.store.url, self.state_dir)
        self.keys = KeyStore(
            self.engine,
            server_secret(self.state_dir, config.auth.secret_file),
            config.auth.key_cache_seconds,
        )
        self.deployments = Deployments(
            self.engine, config.deploy, config.deploy.models_root or self.state_dir / "models"
        )
        self.limiter = make_limiter(config.limits) if config.limits.enabled else None
        self.audit_log: Any = None
        self.finalizers: list[Finalizer] = [self._record_metrics]
        if config.deploy.require_signed and not config.deploy.trusted_keys:
            raise ConfigError(
                "deploy.require_signed is set but no trusted keys are configured",
                fix="list the signers' public keys in [deploy] trusted_keys",
            )
        unknown = [name for name in config.chain.stages if name not in STAGES]
        if unknown:
            raise ConfigError(
                f"unknown chain stage {unknown[0]!r}", fix=f"choose from: {', '.join(STAGES)}"
            )
        check_chain(config.defences, config.chain.stages)

    def start(self) -> None:
        """Load the models and open the audit log (in the serving process)."""
        self.deployments.bootstrap(self.config.models)
        if self.config.deploy.models_root is None:
            self.deployments.models_root.mkdir(parents=True, exist_ok=True)
        if self.config.audit.enabled:
            try:
                self.audit_log = open_audit_log(
                    self.config.audit.url, self.state_dir, self.config.audit.durability
                )
            except ImportError as exc:
                raise ConfigError(
                    "the audit log (bastion.audit) is not available in this installation",
                    fix="set [audit] enabled = false, or install the audit module",
                ) from exc
            self.finalizers.insert(
                0, AuditFinalizer(self.audit_log, self.metrics, self.config.audit.fail_open)
            )

    def limit_stage(self, scope: str) -> Stage:
        items = parse_limits(
            self.config.limits.per_ip if scope == "ip" else self.config.limits.per_key
        )
        if self.limiter is None:
            items = []
        return RateLimitStage(
            scope, self.limiter, items, self.config.limits.fail_open, self.metrics
        )

    def infer_chain(self) -> Chain:
        return Chain([STAGES[name](self) for name in self.config.chain.stages], self.finalizers)

    def guarded(self, name: str, handler: Handler, role: str = "client", mfa: bool = True) -> Chain:
        """IP limit, authentication (role, TOTP), key limit, then the handler."""
        stages: list[Stage] = [self.limit_stage("ip"), Authenticate(self, role=role, mfa=mfa)]
        if role == "client":
            stages.append(self.limit_stage("key"))
        return Chain([*stages, Call(name, handler)], self.finalizers)

    async def _record_metrics(self, ctx: Context) -> None:
        model = (ctx.model_name or "") if "deployment" in ctx.extra else ""
        variant = ctx.variant or ""
        count, latency = self.metrics.request(ctx.action, model, variant, ctx.status)
        count.inc()
        latency.observe(ctx.latency_ms / 1000.0)
        if ctx.status >= 400:
            self.metrics.rejections.labels(ctx.code).inc()


class GatewayApp(FastAPI):
    """FastAPI with a direct ASGI path for `POST /v2/models/{name}/infer`.

    The route stays registered (OpenAPI, mounted apps with a root path, apps given a
    middleware, which the direct path would skip); the direct path runs the same endpoint,
    and an unexpected error gets the app's 500 answer and is re-raised for the server log.
    """

    infer_endpoint: Endpoint | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            self.infer_endpoint is not None
            and scope["type"] == "http"
            and scope["method"] == "POST"
            and not scope.get("root_path")
            and not self.user_middleware
        ):
            match = INFER_PATH.fullmatch(scope["path"])
            if match is not None:
                scope["app"] = self
                await self._direct(self.infer_endpoint, match[1], scope, receive, send)
                return
        await super().__call__(scope, receive, send)

    async def _direct(
        self, endpoint: Endpoint, name: str, scope: Scope, receive: Receive, send: Send
    ) -> None:
        started = False

        async def tracked(message: Any) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            response = await endpoint(name, Request(scope, receive))
            await response(scope, receive, tracked)
        except Exception as exc:
            if not started:
                await unexpected(exc)(scope, receive, send)
            raise


def unexpected(exc: Exception) -> JSONResponse:
    """The 500 answer to an error no stage turned into a refusal."""
    return JSONResponse(
        {"error": {"code": "internal_error", "message": type(exc).__name__}}, status_code=500
    )


async def respond(chain: Chain, ctx: Context) -> Response:
    """Run the chain and turn its outcome into an HTTP response."""
    try:
        await chain.run(ctx)
    except Rejected as exc:
        return JSONResponse(
            exc.body(), status_code=exc.status, headers={**ctx.response_headers, **exc.headers}
        )
    return Response(
        json.dumps(ctx.result, separators=(",", ":")),
        status_code=ctx.status,
        media_type="application/json",
        headers=ctx.response_headers,
    )


def context(action: str, request: Request, model_name: str | None = None) -> Context:
    client = request.client.host if request.client else "unknown"
    return Context(action=action, client_ip=client, headers=request.headers, model_name=model_name)


# -- request bodies of the admin API (validated inside the chain, after authentication) --------


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class NewKey(_Body):
    name: str = Field(min_length=1, max_length=200)
    role: str = Field(pattern="^(client|operator|admin)$")
    expires_in_seconds: float | None = Field(None, gt=0)


class Rotation(_Body):
    grace_seconds: float = Field(0.0, ge=0, le=30 * 86400)


class NewVersion(_Body):
    variant: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
    spec: str = Field(min_length=1, max_length=4096)
    signature: str | None = Field(None, max_length=4096)


class Weights(_Body):
    weights: dict[str, float]


class Activation(_Body):
    variant: str


async def _parse_body(ctx: Context, schema: type[BaseModel]) -> Any:
    from bastion.gateway.validation import parse_json, read_limited

    ctx.body = await read_limited(
        ctx.extra.pop("body_stream"), ctx.headers.get("content-length"), 64 * 1024
    )
    payload = parse_json(ctx.body or b"{}", 8)
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "body"
        raise Rejected(422, "invalid_request", f"{where}: {first['msg']}") from None


def _body_doc(schema: type[BaseModel]) -> dict[str, Any]:
    return {
        "requestBody": {
            "required": True,
            "content": {"application/json": {"schema": schema.model_json_schema()}},
        }
    }


INFER_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["inputs"],
    "properties": {
        "id": {"type": "string"},
        "parameters": {"type": "object"},
        "inputs": {
            "type": "array",
            "items": {
                "type": "object",
                "required": ["name", "shape", "datatype", "data"],
                "properties": {
                    "name": {"type": "string"},
                    "shape": {"type": "array", "items": {"type": "integer"}},
                    "datatype": {"type": "string"},
                    "parameters": {"type": "object"},
                    "data": {"type": "array"},
                },
            },
        },
        "outputs": {"type": "array", "items": {"type": "object"}},
    },
}


def create_app(config: ServeConfig, state_dir: Path | None = None) -> GatewayApp:
    """Build the gateway app; models load and the audit log opens at start-up."""
    gw = Gateway(config, state_dir)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        gw.start()
        # What start-up loaded (models, torch, the app) lives as long as the process: keep it
        # out of the collector's scans, so full collections under load stay short.
        gc.freeze()
        sys.setswitchinterval(GIL_SWITCH_INTERVAL_S)
        yield
        closer = getattr(gw.audit_log, "aclose", None) or getattr(gw.audit_log, "close", None)
        if closer is not None:
            result = closer()
            if hasattr(result, "__await__"):
                await result
        gw.engine.dispose()

    app = GatewayApp(title="Bastion gateway", version=__version__, lifespan=lifespan)
    app.state.gateway = gw
    infer_chain = gw.infer_chain()

    # -- Open Inference Protocol v2 --------------------------------------------------------

    @app.get("/v2/health/live", tags=["health"])
    async def live() -> dict[str, bool]:
        return {"live": True}

    @app.get("/v2/health/ready", tags=["health"])
    async def ready() -> dict[str, bool]:
        return {"ready": bool(gw.deployments.models)}

    @app.get("/v2", tags=["oip"])
    async def server_metadata() -> dict[str, Any]:
        return {"name": "bastion", "version": __version__, "extensions": []}

    async def _metadata(ctx: Context) -> None:
        dep = resolve(gw, ctx)
        model = dep.signature
        ctx.result = {
            "name": dep.name,
            "versions": sorted(v for v, w in dep.weights.items() if w > 0),
            "platform": "bastion",
            "inputs": [{"name": "input", "datatype": "FP32", "shape": [-1, *model.input_shape]}],
            "outputs": [
                {"name": "probabilities", "datatype": "FP32", "shape": [-1, model.n_classes]}
            ],
            "parameters": {
                "input_bounds": list(model.input_bounds) if model.input_bounds else None
            },
        }

    async def _model_ready(ctx: Context) -> None:
        dep = resolve(gw, ctx)
        ctx.result = {"name": dep.name, "ready": any(w > 0 for w in dep.weights.values())}

    metadata_chain = gw.guarded("model_metadata", _metadata)
    ready_chain = gw.guarded("model_ready", _model_ready)

    @app.get("/v2/models/{model_name}", tags=["oip"])
    async def model_metadata(model_name: str, request: Request) -> Response:
        return await respond(metadata_chain, context("model_metadata", request, model_name))

    @app.get("/v2/models/{model_name}/ready", tags=["oip"])
    async def model_ready(model_name: str, request: Request) -> Response:
        return await respond(ready_chain, context("model_ready", request, model_name))

    @app.post("/v2/models/{model_name}/infer", tags=["oip"], openapi_extra=_infer_doc())
    async def infer(model_name: str, request: Request) -> Response:
        ctx = context("infer", request, model_name)
        ctx.extra["body_stream"] = request.stream()
        return await respond(infer_chain, ctx)

    app.infer_endpoint = infer

    def tenant_of(ctx: Context) -> str:
        return ctx.principal.tenant if ctx.principal else "default"

    # -- metrics ---------------------------------------------------------------------------

    async def _metrics(ctx: Context) -> None:
        if ctx.principal is None:  # authentication is off: every model is open anyway
            ctx.extra["raw"] = gw.metrics.render()
            return
        # Only the caller's tenant's models: another tenant's model names and traffic stay
        # hidden (a model that is no longer deployed has no owner, so it is hidden too).
        tenant = ctx.principal.tenant
        owners = {name: dep.tenant for name, dep in gw.deployments.models.items()}
        ctx.extra["raw"] = gw.metrics.render(lambda model: owners.get(model) == tenant)

    metrics_chain = gw.guarded("metrics", _metrics, role="operator", mfa=False)

    @app.get("/metrics", tags=["operations"])
    async def metrics(request: Request) -> Response:
        if not config.metrics.enabled:
            return JSONResponse(
                {"error": {"code": "not_found", "message": "metrics are disabled"}}, status_code=404
            )
        if not config.metrics.require_key:
            return Response(gw.metrics.render(), media_type="text/plain; version=0.0.4")
        ctx = context("metrics", request)
        try:
            await metrics_chain.run(ctx)
        except Rejected as exc:
            headers = {**ctx.response_headers, **exc.headers}
            return JSONResponse(exc.body(), status_code=exc.status, headers=headers)
        return Response(ctx.extra["raw"], media_type="text/plain; version=0.0.4")

    # -- admin API: keys (admin role) -------------------------------------------------------

    async def audit_change(ctx: Context, detail: Any) -> None:
        await audit_before_change(gw.audit_log, gw.metrics, ctx, detail)

    def owned_key(ctx: Context, key_id: str) -> None:
        try:
            info = gw.keys.get(key_id)
        except Exception:
            info = None
        if info is None or info.tenant != tenant_of(ctx):
            raise Rejected(404, "key_not_found", f"no key with id {key_id!r}")

    async def _list_keys(ctx: Context) -> None:
        now = time.time()
        ctx.result = {"keys": [_key_json(k, now) for k in gw.keys.list(tenant_of(ctx))]}

    async def _create_key(ctx: Context) -> None:
        body = await _parse_body(ctx, NewKey)
        expires = time.time() + body.expires_in_seconds if body.expires_in_seconds else None
        try:
            raw, row = gw.keys.draft(body.name, body.role, tenant_of(ctx), expires)
        except BastionError as exc:
            raise Rejected(422, "invalid_request", exc.message) from None
        ctx.status = 201
        await audit_change(ctx, {"created_key": row["key_id"], "role": row["role"]})
        info = gw.keys.commit(row)
        ctx.result = {"key": raw, **_key_json(info, time.time())}

    async def _revoke_key(ctx: Context) -> None:
        key_id = ctx.extra["key_id"]
        owned_key(ctx, key_id)
        await audit_change(ctx, {"revoked_key": key_id})
        info = gw.keys.revoke(key_id)
        ctx.result = _key_json(info, time.time())

    async def _rotate_key(ctx: Context) -> None:
        key_id = ctx.extra["key_id"]
        owned_key(ctx, key_id)
        body = await _parse_body(ctx, Rotation)
        try:
            raw, row = gw.keys.draft_rotation(key_id)
        except BastionError as exc:
            raise Rejected(409, "key_not_active", exc.message) from None
        await audit_change(ctx, {"rotated_key": key_id, "new_key": row["key_id"]})
        info = gw.keys.commit_rotation(key_id, row, body.grace_seconds)
        ctx.result = {"key": raw, **_key_json(info, time.time())}

    async def _show_config(ctx: Context) -> None:
        shown = json.loads(config.model_dump_json())
        tenant = tenant_of(ctx)
        shown["models"] = [m for m in shown.get("models", []) if m.get("tenant") == tenant]
        ctx.result = mask_secrets(shown)

    chains = {
        "keys_list": gw.guarded("keys_list", _list_keys, role="admin"),
        "keys_create": gw.guarded("keys_create", _create_key, role="admin"),
        "keys_revoke": gw.guarded("keys_revoke", _revoke_key, role="admin"),
        "keys_rotate": gw.guarded("keys_rotate", _rotate_key, role="admin"),
        "config_show": gw.guarded("config_show", _show_config, role="admin"),
    }

    async def run_admin(
        action: str, request: Request, model_name: str | None = None, **extra: Any
    ) -> Response:
        ctx = context(action, request, model_name)
        ctx.extra.update(extra, body_stream=request.stream())
        return await respond(chains[action], ctx)

    @app.get("/admin/keys", tags=["admin"])
    async def list_keys(request: Request) -> Response:
        return await run_admin("keys_list", request)

    @app.post("/admin/keys", tags=["admin"], status_code=201, openapi_extra=_body_doc(NewKey))
    async def create_key(request: Request) -> Response:
        return await run_admin("keys_create", request)

    @app.delete("/admin/keys/{key_id}", tags=["admin"])
    async def revoke_key(key_id: str, request: Request) -> Response:
        return await run_admin("keys_revoke", request, key_id=key_id)

    @app.post("/admin/keys/{key_id}/rotate", tags=["admin"], openapi_extra=_body_doc(Rotation))
    async def rotate_key(key_id: str, request: Request) -> Response:
        return await run_admin("keys_rotate", request, key_id=key_id)

    @app.get("/admin/config", tags=["admin"])
    async def show_config(request: Request) -> Response:
        return await run_admin("config_show", request)

    # -- admin API: deployments (operator role) ---------------------------------------------

    async def _list_deployments(ctx: Context) -> None:
        tenant = tenant_of(ctx)
        gw.deployments.refresh(force=True)
        ctx.result = {
            "models": [d.public() for d in gw.deployments.models.values() if d.tenant == tenant]
        }

    async def _register(ctx: Context) -> None:
        body = await _parse_body(ctx, NewVersion)
        by = ctx.principal.key_id if ctx.principal else "anonymous"
        name, tenant = ctx.model_name or "", tenant_of(ctx)
        entry = gw.deployments.prepare_version(
            name, body.variant, body.spec, tenant, body.signature
        )
        ctx.variant = body.variant
        ctx.status = 201
        await audit_change(ctx, {"registered": body.variant, "digest": entry.digest})
        dep = gw.deployments.commit_version(name, tenant, entry, by)
        ctx.result = dep.public()

    async def _set_weights(ctx: Context) -> None:
        body = await _parse_body(ctx, Weights)
        dep, new = gw.deployments.plan_weights(ctx.model_name or "", body.weights, tenant_of(ctx))
        await audit_change(ctx, {"weights": new})
        dep = gw.deployments.commit_weights(dep, new)
        _publish_weights(gw, dep.name, dep.weights)
        ctx.result = dep.public()

    async def _activate(ctx: Context) -> None:
        body = await _parse_body(ctx, Activation)
        dep, new = gw.deployments.plan_weights(
            ctx.model_name or "", {body.variant: 1.0}, tenant_of(ctx)
        )
        ctx.variant = body.variant
        await audit_change(ctx, {"active": body.variant})
        dep = gw.deployments.commit_weights(dep, new)
        _publish_weights(gw, dep.name, dep.weights)
        ctx.result = dep.public()

    chains.update(
        deployments_list=gw.guarded("deployments_list", _list_deployments, role="operator"),
        version_register=gw.guarded("version_register", _register, role="operator"),
        weights_set=gw.guarded("weights_set", _set_weights, role="operator"),
        variant_activate=gw.guarded("variant_activate", _activate, role="operator"),
    )

    @app.get("/admin/deployments", tags=["admin"])
    async def list_deployments(request: Request) -> Response:
        return await run_admin("deployments_list", request)

    @app.post(
        "/admin/models/{model_name}/versions",
        tags=["admin"],
        status_code=201,
        openapi_extra=_body_doc(NewVersion),
    )
    async def register_version(model_name: str, request: Request) -> Response:
        return await run_admin("version_register", request, model_name)

    @app.put("/admin/models/{model_name}/weights", tags=["admin"], openapi_extra=_body_doc(Weights))
    async def set_weights(model_name: str, request: Request) -> Response:
        return await run_admin("weights_set", request, model_name)

    @app.post(
        "/admin/models/{model_name}/activate", tags=["admin"], openapi_extra=_body_doc(Activation)
    )
    async def activate(model_name: str, request: Request) -> Response:
        return await run_admin("variant_activate", request, model_name)

    from bastion.gateway.incidents import register_incident_routes

    register_incident_routes(app, gw)

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected(exc)

    return app


def _infer_doc() -> dict[str, Any]:
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": INFER_SCHEMA}}}
    }


SECRET_NAME = re.compile(r"key|secret|passw|token|credential|auth", re.IGNORECASE)
MASK = "***"


def mask_secrets(value: Any, name: str = "") -> Any:
    """A copy of a config tree with every secret-like value replaced by ***.

    Any field whose name mentions a key, secret, password, token, credential or auth is
    masked (unless empty or a number); every URL anywhere loses its userinfo password
    and all query parameter values, which drivers use for passwords and tokens too.
    """
    if isinstance(value, dict):
        return {k: mask_secrets(v, str(k)) for k, v in value.items()}
    if isinstance(value, list):
        return [mask_secrets(v, name) for v in value]
    if value is None or isinstance(value, bool | int | float) or value == "":
        return value
    if SECRET_NAME.search(name):
        return MASK
    return _mask_url(value) if isinstance(value, str) else value


def _mask_url(text: str) -> str:
    """`text` with a URL's password and query values masked; other strings unchanged."""
    from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

    if "://" not in text:
        return text
    try:
        parts = urlsplit(text)
        if "@" not in parts.netloc and not parts.query and not parts.fragment:
            return text
        netloc = parts.netloc
        if "@" in netloc:
            userinfo, host = netloc.rsplit("@", 1)
            user = userinfo.split(":", 1)[0]
            netloc = f"{user}:{MASK}@{host}" if ":" in userinfo else f"{MASK}@{host}"
        query = urlencode([(k, MASK) for k, _ in parse_qsl(parts.query, keep_blank_values=True)])
        return urlunsplit(parts._replace(netloc=netloc, query=query, fragment=""))
    except ValueError:
        return MASK


def _publish_weights(gw: Gateway, model: str, weights: dict[str, float]) -> None:
    for variant, weight in weights.items():
        gw.metrics.canary_weight.labels(model=model, variant=variant).set(weight)


def _key_json(info: Any, now: float) -> dict[str, Any]:
    return {
        "key_id": info.key_id,
        "name": info.name,
        "role": info.role,
        "tenant": info.tenant,
        "created_at": info.created_at,
        "expires_at": info.expires_at,
        "revoked_at": info.revoked_at,
        "mfa_enrolled": info.mfa_enrolled,
        "status": info.status(now),
    }


__all__ = ["ROLES", "Gateway", "create_app"]
