"""The audit stage: every request, allowed or refused, becomes a record in the Merkle log.

The record is committed before the response is sent (`AuditLog.append` returns only
after a durable, group-batched commit). It holds digests, never inputs or secrets.
"""

from __future__ import annotations

import hashlib
import time
from pathlib import Path
from typing import Any

from bastion.gateway.chain import Context, Rejected
from bastion.gateway.metrics import Metrics


def open_audit_log(url: str | None, state_dir: Path, durability: str = "full") -> Any:
    """Open the shared log: `url`, else the state directory's default file and signing key.

    Using the audit module's defaults means `bastion audit verify` finds the same log and
    key without flags. A store that is down at start-up is retried on each append.
    """
    from bastion.audit import AuditUnavailable, open_log

    try:
        return open_log(url, state_dir=state_dir, durability=durability)  # type: ignore[arg-type]
    except AuditUnavailable:
        return DeferredLog(url, state_dir, durability)


class DeferredLog:
    """An audit log whose store was unreachable at start-up: every append retries opening it."""

    def __init__(self, url: str | None, state_dir: Path, durability: str) -> None:
        self.url, self.state_dir, self.durability = url, state_dir, durability
        self.log: Any = None

    @property
    def pending(self) -> int:
        return 0 if self.log is None else int(self.log.pending)

    async def append(self, record: dict[str, Any]) -> int:
        if self.log is None:
            from bastion.audit import open_log

            self.log = open_log(self.url, state_dir=self.state_dir, durability=self.durability)  # type: ignore[arg-type]
        return int(await self.log.append(record))

    async def aclose(self) -> None:
        if self.log is not None:
            await self.log.aclose()

    def __getattr__(self, name: str) -> Any:
        if self.log is None:
            from bastion.audit import AuditUnavailable

            raise AuditUnavailable("the audit store has not been reachable since start-up")
        return getattr(self.log, name)


def audit_record(ctx: Context) -> dict[str, Any]:
    """The audit fields of a request: who, what, which version, digests, decision, latency."""
    principal = ctx.principal
    return {
        "time": time.time(),
        "action": ctx.action,
        "tenant": principal.tenant if principal else None,
        "key_id": principal.key_id if principal else None,
        "client_ip": ctx.client_ip,
        "model": ctx.model_name,
        "variant": ctx.variant,
        "request_id": ctx.request_id,
        "input_digest": hashlib.sha256(ctx.body).hexdigest() if ctx.body else None,
        "output_digest": hashlib.sha256(ctx.outputs.tobytes()).hexdigest()
        if ctx.outputs is not None
        else None,
        "decision": "allow" if ctx.status < 400 else "refuse",
        "status": ctx.status,
        "code": ctx.code,
        "detail": ctx.extra.get("audit_detail"),
        "latency_ms": round(ctx.latency_ms, 3),
    }


class AuditFinalizer:
    """Appends the request's record; an unreachable log refuses it (503) unless fail-open."""

    name = "audit"

    def __init__(self, log: Any, metrics: Metrics, fail_open: bool) -> None:
        self.log = log
        self.metrics = metrics
        self.fail_open = fail_open

    async def __call__(self, ctx: Context) -> None:
        if ctx.extra.get("audited") and ctx.status < 400:
            return  # an admin change recorded before it was committed
        started = time.perf_counter()
        try:
            seq = await self.log.append(audit_record(ctx))
        except Exception as exc:
            self.metrics.audit_failures.inc()
            if self.fail_open:
                return
            raise Rejected(
                503, "audit_unavailable", f"the audit log cannot commit: {type(exc).__name__}"
            ) from exc
        self.metrics.audit_lag.observe(time.perf_counter() - started)
        self.metrics.audit_pending.set(getattr(self.log, "pending", 0))
        ctx.response_headers["Bastion-Audit-Index"] = str(seq)


async def audit_before_change(log: Any, metrics: Metrics, ctx: Context, detail: Any) -> None:
    """Record an admin change before it is committed; an unrecordable change is refused.

    Admin changes fail closed whatever `fail_open` says: a failed append raises 503 and
    the caller commits nothing. Should the commit fail afterwards, the finalizer appends
    a second record with the failure, so the log never shows a change without its outcome.
    """
    ctx.extra["audit_detail"] = detail
    if log is None:
        return
    try:
        seq = await log.append(audit_record(ctx))
    except Exception as exc:
        metrics.audit_failures.inc()
        raise Rejected(
            503, "audit_unavailable", f"the audit log cannot commit: {type(exc).__name__}"
        ) from exc
    ctx.response_headers["Bastion-Audit-Index"] = str(seq)
    ctx.extra["audited"] = True
