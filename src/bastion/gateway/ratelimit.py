"""Rate limits with the `limits` library: several windows at once, per key or per client IP.

In memory by default; `async+redis://` shares the counters across replicas. A storage
outage fails closed (503) unless `limits.fail_open` is set.
"""

from __future__ import annotations

import math
import time
from typing import Any

from bastion.core.errors import ConfigError
from bastion.gateway.chain import Context, Rejected
from bastion.gateway.config import LimitsConfig
from bastion.gateway.metrics import Metrics

STRATEGIES = {
    "moving-window": "MovingWindowRateLimiter",
    "fixed-window": "FixedWindowRateLimiter",
    "sliding-window-counter": "SlidingWindowCounterRateLimiter",
}


def make_limiter(config: LimitsConfig) -> Any:
    """The async limiter over the configured storage."""
    from limits.aio import strategies
    from limits.storage import storage_from_string

    uri = config.storage
    if uri.startswith(("redis://", "rediss://")):
        uri = "async+" + uri
    if uri == "memory://":
        uri = "async+memory://"
    options: dict[str, Any] = {"wrap_exceptions": True}
    if "redis" in uri:
        options.update(
            implementation="redispy", key_prefix=config.key_prefix, socket_connect_timeout=2
        )
    try:
        storage = storage_from_string(uri, **options)
    except Exception as exc:
        raise ConfigError(
            f"cannot use rate-limit storage {config.storage!r}: {exc}",
            fix="use memory:// or async+redis://HOST:PORT",
        ) from exc
    return getattr(strategies, STRATEGIES[config.strategy])(storage)


def parse_limits(items: list[str]) -> list[Any]:
    from limits import parse

    try:
        return [parse(item) for item in items]
    except ValueError as exc:
        raise ConfigError(
            f"invalid rate limit: {exc}", fix="write limits like '20/second' or '10000/day'"
        ) from exc


class RateLimitStage:
    """Counts one hit in every window for the request's scope (client IP or API key)."""

    def __init__(
        self, scope: str, limiter: Any, items: list[Any], fail_open: bool, metrics: Metrics
    ) -> None:
        self.name = f"{scope}_limit"
        self.scope = scope
        self.limiter = limiter
        self.items = items
        self.fail_open = fail_open
        self.metrics = metrics
        self.policy = ", ".join(f"{i.amount};w={i.get_expiry()}" for i in items)

    def _identity(self, ctx: Context) -> str | None:
        if self.scope == "ip":
            return f"ip:{ctx.client_ip}"
        return f"key:{ctx.principal.key_id}" if ctx.principal is not None else None

    async def __call__(self, ctx: Context) -> None:
        from limits.errors import StorageError

        identity = self._identity(ctx)
        if identity is None or not self.items:
            return
        try:
            blocked: int | None = None
            for index, item in enumerate(self.items):
                if not await self.limiter.hit(item, identity):
                    blocked = index
                    break
            # Headers describe the window that refused, else the first window listed.
            item = self.items[blocked or 0]
            stats = await self.limiter.get_window_stats(item, identity)
        except StorageError as exc:
            self.metrics.store_unavailable.labels(store="limits").inc()
            if self.fail_open:
                return
            raise Rejected(
                503,
                "limits_unavailable",
                f"rate-limit storage unreachable: {type(exc.storage_error).__name__}",
            ) from exc
        reset = max(0, math.ceil(stats.reset_time - time.time()))
        headers = {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(reset),
            "RateLimit-Policy": self.policy,
        }
        ctx.response_headers.update(headers)
        if blocked is not None:
            self.metrics.rate_limited.labels(scope=self.scope).inc()
            raise Rejected(
                429,
                "rate_limited",
                f"rate limit of {item} per {self.scope} exceeded; retry after {max(reset, 1)} s",
                headers={**headers, "Retry-After": str(max(reset, 1))},
            )
