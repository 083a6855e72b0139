"""The built-in request stages: authenticate, validate, route, predict.

Later capabilities add stages (detect, output defence) by adding a factory to `STAGES`
and naming it in `[chain] stages`; nothing here changes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from starlette.concurrency import run_in_threadpool

from bastion.core.errors import BastionError
from bastion.gateway.batching import Batchers
from bastion.gateway.chain import Context, Rejected, Stage
from bastion.gateway.deploy import Deployment
from bastion.gateway.keystore import AuthFailure, StoreUnavailable
from bastion.gateway.validation import parse_infer_request, parse_json, read_limited

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway

INLINE_PREDICT_VALUES = (
    1 << 16
)  # larger batches run in a worker thread so the event loop stays free


class Authenticate:
    """Verify the API key, the role the action needs and, for privileged roles, a TOTP code."""

    name = "authenticate"

    def __init__(self, gateway: Gateway, role: str = "client", mfa: bool = True) -> None:
        self.gateway = gateway
        self.role = role
        self.mfa = mfa and role in gateway.config.auth.mfa_roles

    async def __call__(self, ctx: Context) -> None:
        config = self.gateway.config.auth
        if not config.enabled:
            return
        raw = _credential(ctx)
        if raw is None:
            raise Rejected(
                401,
                "missing_key",
                "send an API key as 'Authorization: Bearer <key>'",
                {"WWW-Authenticate": "Bearer"},
            )
        store = self.gateway.keys
        try:
            ctx.principal = store.authenticate(raw)
            if not ctx.principal.has_role(self.role):
                raise Rejected(
                    403,
                    "forbidden_role",
                    f"this action needs the {self.role} role; the key has {ctx.principal.role}",
                )
            if self.mfa:
                store.verify_totp(
                    ctx.principal.key_id,
                    ctx.headers.get("x-bastion-otp"),
                    config.mfa_max_failures,
                    config.mfa_lockout_seconds,
                )
        except AuthFailure as exc:
            headers = {"WWW-Authenticate": "Bearer"} if exc.status == 401 else {}
            if exc.retry_after is not None:
                headers["Retry-After"] = str(exc.retry_after)
            raise Rejected(exc.status, exc.code, exc.message, headers) from None
        except StoreUnavailable:
            self.gateway.metrics.store_unavailable.labels(store="keys").inc()
            raise Rejected(
                503, "store_unavailable", "the key store is unreachable; try again shortly"
            ) from None


def _credential(ctx: Context) -> str | None:
    header = ctx.headers.get("authorization")
    if header is not None:
        scheme, _, value = header.partition(" ")
        return value.strip() if scheme.lower() == "bearer" and value.strip() else ""
    return ctx.headers.get("x-api-key")


def resolve(gateway: Gateway, ctx: Context) -> Deployment:
    """The requested model, if it exists and belongs to the caller's tenant (else 404)."""
    found = ctx.extra.get("deployment")
    if found is not None:
        return found
    dep = gateway.deployments.get(ctx.model_name or "")
    if dep is None or (ctx.principal is not None and dep.tenant != ctx.principal.tenant):
        raise Rejected(404, "model_not_found", f"no model named {ctx.model_name!r}")
    ctx.extra["deployment"] = dep
    return dep


class Validate:
    """Read the body within its size limit and check it against the model's signature."""

    name = "validate"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, ctx: Context) -> None:
        dep = resolve(self.gateway, ctx)
        limits = self.gateway.config.validation
        stream: Any = ctx.extra.pop("body_stream")
        ctx.body = await read_limited(
            stream, ctx.headers.get("content-length"), limits.max_body_bytes
        )
        payload = parse_json(ctx.body, limits.max_json_depth)
        model = dep.signature
        ctx.inputs, ctx.request_id = parse_infer_request(
            payload, model.input_shape, model.input_bounds, limits.max_batch
        )


class Route:
    """Pick the variant that serves this request (blue-green or canary weights)."""

    name = "route"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, ctx: Context) -> None:
        dep = resolve(self.gateway, ctx)
        variant = dep.choose(self.gateway.deployments.rng)
        ctx.variant = variant.name
        ctx.extra["model"] = variant.model


class Predict:
    """Run the chosen variant and build the OIP response.

    Small requests are micro-batched: those reaching this stage in the same event-loop
    turn share one forward pass (see `bastion.gateway.batching`); large ones run alone in
    a worker thread so the event loop stays free.
    """

    name = "predict"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.batchers = Batchers()

    async def __call__(self, ctx: Context) -> None:
        model = ctx.extra.get("model")
        if model is None or ctx.inputs is None:
            raise Rejected(
                500, "chain_misconfigured", "predict needs the validate and route stages before it"
            )
        try:
            if ctx.inputs.size <= INLINE_PREDICT_VALUES:
                probs = await self.batchers.of(model).predict_proba(ctx.inputs)
            else:
                probs = await run_in_threadpool(model.predict_proba, ctx.inputs)
        except BastionError as exc:
            raise Rejected(500, "model_error", exc.message) from None
        ctx.outputs = probs.astype("float32", copy=False)
        ctx.result = {
            "model_name": ctx.model_name,
            "model_version": ctx.variant,
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": list(ctx.outputs.shape),
                    "data": ctx.outputs.ravel().tolist(),
                }
            ],
        }
        if ctx.request_id is not None:
            ctx.result["id"] = ctx.request_id


class Call:
    """The endpoint's own work as the last stage, so audit and metrics see its outcome."""

    def __init__(self, name: str, handler: Callable[[Context], Awaitable[None]]) -> None:
        self.name = name
        self.handler = handler

    async def __call__(self, ctx: Context) -> None:
        try:
            await self.handler(ctx)
        except StoreUnavailable:
            raise Rejected(
                503, "store_unavailable", "the store is unreachable; try again shortly"
            ) from None


StageFactory = Callable[["Gateway"], Stage]

STAGES: dict[str, StageFactory] = {
    "ip_limit": lambda g: g.limit_stage("ip"),
    "authenticate": lambda g: Authenticate(g, role="client"),
    "key_limit": lambda g: g.limit_stage("key"),
    "validate": Validate,
    "route": Route,
    "predict": Predict,
}

# The serving-time defences register their stages here (enforce, defend_route, detect, ...).
from bastion.gateway.defence_stages import DEFENCE_STAGES  # noqa: E402

STAGES.update(DEFENCE_STAGES)
