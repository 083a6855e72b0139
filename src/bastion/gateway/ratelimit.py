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
    """Counts one hit in every window for the request's scope (client IP or API key).

    A refusal carries the RateLimit-* headers of the window that refused (and Retry-After);
    an allowed request those of the first window of the last limit stage it passed, read
    once after the chain (the IP stage's are not read when the key stage follows).
    """

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
            for item in self.items:
                if not await self.limiter.hit(item, identity):
                    break
            else:
                # Allowed: the headers describe the first window, computed after the chain
                # unless a later limit stage (the key after the IP) supersedes them.
                ctx.pending_headers = lambda: self._publish(ctx, identity)
                return
            ctx.pending_headers = None  # the refusal's headers describe its own window
            stats = await self.limiter.get_window_stats(item, identity)
        except StorageError as exc:
            self._storage_down()
            if self.fail_open:
                return
            raise Rejected(
                503,
                "limits_unavailable",
                f"rate-limit storage unreachable: {type(exc.storage_error).__name__}",
            ) from exc
        headers = self._headers(item, stats)
        ctx.response_headers.update(headers)
        self.metrics.rate_limited.labels(scope=self.scope).inc()
        retry = headers["RateLimit-Reset"] if headers["RateLimit-Reset"] != "0" else "1"
        raise Rejected(
            429,
            "rate_limited",
            f"rate limit of {item} per {self.scope} exceeded; retry after {retry} s",
            headers={**headers, "Retry-After": retry},
        )

    async def _publish(self, ctx: Context, identity: str) -> None:
        """Set the RateLimit-* headers of the first window for an allowed request."""
        from limits.errors import StorageError

        try:
            stats = await self.limiter.get_window_stats(self.items[0], identity)
        except StorageError:
            # The hit was counted a moment ago; only these informational headers are lost.
            self._storage_down()
            return
        ctx.response_headers.update(self._headers(self.items[0], stats))

    def _headers(self, item: Any, stats: Any) -> dict[str, str]:
        return {
            "RateLimit-Limit": str(item.amount),
            "RateLimit-Remaining": str(max(0, stats.remaining)),
            "RateLimit-Reset": str(max(0, math.ceil(stats.reset_time - time.time()))),
            "RateLimit-Policy": self.policy,
        }

    def _storage_down(self) -> None:
        self.metrics.store_unavailable.labels(store="limits").inc()
