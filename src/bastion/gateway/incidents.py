"""The `enforce` stage (revoke and throttle actions) and the operator's incident API.

`GET /admin/incidents` lists keys under an incident; `DELETE /admin/incidents/{key_id}`
lifts every action and resets the key's detector state. Both are audited like every request.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from fastapi import FastAPI, Request
from fastapi.responses import Response

from bastion.gateway.chain import Context, Rejected
from bastion.gateway.defences import defences_of

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway


class Enforce:
    """Refuse requests of a suspended key; space out those of a throttled one."""

    name = "enforce"

    def __init__(self, gateway: Gateway) -> None:
        self.defences = defences_of(gateway)

    async def __call__(self, ctx: Context) -> None:
        incident = self.defences.incident(ctx)
        if incident is None or ctx.principal is None:
            return
        if "revoke" in incident.actions:
            raise Rejected(403, "key_suspended", "this key is suspended; contact the operator")
        interval = self.defences.config.incidents.throttle_seconds
        if "throttle" in incident.actions and self.defences.book.throttled(
            ctx.principal.key_id, interval
        ):
            raise Rejected(
                429,
                "throttled",
                "too many requests for this key",
                {"Retry-After": str(int(interval) or 1)},
            )


def register_incident_routes(app: FastAPI, gw: Gateway) -> None:
    """Add the incident endpoints (operator role) to the admin API."""
    from bastion.gateway.app import context, respond

    defences = defences_of(gw)

    def same_tenant(ctx: Context, key_id: str) -> bool:
        try:
            info = gw.keys.get(key_id)
        except Exception:
            return False
        return (
            info is not None and ctx.principal is not None and info.tenant == ctx.principal.tenant
        )

    async def _list(ctx: Context) -> None:
        ctx.result = {
            "incidents": [i.public() for i in defences.book.all() if same_tenant(ctx, i.key_id)]
        }

    async def _close(ctx: Context) -> None:
        key_id = ctx.extra["key_id"]
        if not same_tenant(ctx, key_id):
            raise Rejected(404, "key_not_found", f"no key with id {key_id!r}")
        lifted = defences.book.close(key_id)
        if lifted is None:
            raise Rejected(404, "no_incident", f"key {key_id!r} has no open incident")
        ctx.extra["audit_detail"] = {"incident_closed": key_id, "lifted": list(lifted.actions)}
        defences.notify({"event": "incident_closed", **lifted.public()})
        ctx.result = {"closed": lifted.public()}

    list_chain = gw.guarded("incidents_list", _list, role="operator")
    close_chain = gw.guarded("incident_close", _close, role="operator")

    @app.get("/admin/incidents", tags=["admin"])
    async def list_incidents(request: Request) -> Response:
        return await respond(list_chain, context("incidents_list", request))

    @app.delete("/admin/incidents/{key_id}", tags=["admin"])
    async def close_incident(key_id: str, request: Request) -> Response:
        ctx = context("incident_close", request)
        ctx.extra["key_id"] = key_id
        return await respond(close_chain, ctx)
