"""The request chain: an ordered list of small stages sharing one request context.

A stage annotates the context or raises `Rejected(status, code, message)`. Finalizers
(audit, metrics) run after the chain for every request, allowed or refused, so a
refusal is recorded exactly like a success.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    import numpy as np

    from bastion.gateway.keystore import Principal


class Rejected(Exception):
    """A request refused by a stage: HTTP status, a machine-readable code and a message."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


@dataclass
class Context:
    """What the stages know about one request; never holds a secret after authentication."""

    action: str
    client_ip: str
    headers: Mapping[str, str]
    body: bytes = b""
    model_name: str | None = None
    principal: Principal | None = None
    variant: str | None = None
    inputs: np.ndarray | None = None
    request_id: str | None = None
    outputs: np.ndarray | None = None
    result: dict[str, Any] | None = None
    response_headers: dict[str, str] = field(default_factory=dict)
    status: int = 200
    code: str = "ok"
    started: float = field(default_factory=time.perf_counter)
    extra: dict[str, Any] = field(default_factory=dict)
    # Response headers a stage computes only if no later stage supersedes them: set by the
    # stage, replaced by a later one, awaited once after the stages (see `Chain.run`).
    pending_headers: Callable[[], Awaitable[None]] | None = None

    @property
    def latency_ms(self) -> float:
        return (time.perf_counter() - self.started) * 1000.0


class Stage(Protocol):
    """One step of the chain."""

    name: str

    async def __call__(self, ctx: Context) -> None: ...


Finalizer = Callable[[Context], Awaitable[None]]


class Chain:
    """Runs the stages in order, then every finalizer, and reports the outcome on `ctx`."""

    def __init__(self, stages: list[Stage], finalizers: list[Finalizer]) -> None:
        self.stages = stages
        self.finalizers = finalizers

    @property
    def names(self) -> list[str]:
        return [s.name for s in self.stages]

    async def run(self, ctx: Context) -> None:
        """Run the chain; raise the first `Rejected` after the finalizers have recorded it.

        Any other exception from a stage (or its pending headers) becomes
        `Rejected(500, "internal_error")`.
        """
        rejection: Rejected | None = None
        try:
            for stage in self.stages:
                await stage(ctx)
        except Rejected as exc:
            rejection = exc
        except Exception:
            # An unexpected failure is still a request to record: audit and metrics see it.
            rejection = Rejected(500, "internal_error", "the request failed unexpectedly")
        if ctx.pending_headers is not None:
            pending, ctx.pending_headers = ctx.pending_headers, None
            try:
                await pending()
            except Exception:
                rejection = rejection or Rejected(
                    500, "internal_error", "the request failed unexpectedly"
                )
        if rejection is not None:
            ctx.status, ctx.code = rejection.status, rejection.code
        failure: Rejected | None = None
        for finalize in self.finalizers:
            try:
                await finalize(ctx)
            except Exception as exc:
                # A finalizer that cannot record the request (audit store down) wins.
                if not isinstance(exc, Rejected):
                    exc = Rejected(500, "internal_error", "the request could not be recorded")
                failure = failure or exc
                ctx.status, ctx.code = exc.status, exc.code
        if failure is not None:
            raise failure
        if rejection is not None:
            raise rejection
