"""The `defend_route` stage: decoy for flagged keys, moving-target pool, else blue-green/canary."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from bastion.core.model import Model
from bastion.defenses.moving_target import Decoy, keyed_index
from bastion.gateway.chain import Context, Rejected
from bastion.gateway.defences import defences_of

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway


class DefendRoute:
    """Pick who answers: every decision is written to the audit record's detail."""

    name = "defend_route"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.defences = defences_of(gateway)
        self.config = self.defences.config.routing
        self.pool_key = self.defences.key(b"moving-target")
        self.decoy_key = self.defences.key(b"decoy")
        self._decoys: dict[tuple[str, str], Model] = {}
        self._route_counters: dict[str, Any] = {}

    async def __call__(self, ctx: Context) -> None:
        from bastion.gateway.stages import resolve

        dep = resolve(self.gateway, ctx)
        incident = self.defences.incident(ctx)
        route: dict[str, str] = {}
        if incident is not None and "decoy" in incident.actions and self.config.decoy:
            variant = dep.choose(self.gateway.deployments.rng)
            if self.config.decoy == "perturbed":
                cache = (dep.name, variant.name)
                if cache not in self._decoys:
                    self._decoys[cache] = Decoy(variant.model, self.decoy_key + dep.name.encode())
                model: Model = self._decoys[cache]
                ctx.variant = f"{variant.name}+decoy"
            else:
                decoy = dep.variants.get(self.config.decoy)
                if decoy is None:
                    raise Rejected(
                        503,
                        "decoy_missing",
                        f"decoy variant {self.config.decoy!r} is not registered",
                    )
                model, ctx.variant = decoy.model, decoy.name
            ctx.extra["true_model"] = variant.model
            route = {"route": "decoy", "served": ctx.variant}
        elif self.config.pool:
            names = [n for n in self.config.pool if n in dep.variants]
            if not names:
                raise Rejected(
                    503, "no_active_variant", f"no pool variant of {dep.name!r} is loaded"
                )
            assert ctx.inputs is not None
            pick = names[int(keyed_index(self.pool_key, ctx.inputs[:1], len(names))[0])]
            model, ctx.variant = dep.variants[pick].model, pick
            route = {"route": "pool", "served": pick}
        else:
            variant = dep.choose(self.gateway.deployments.rng)
            model, ctx.variant = variant.model, variant.name
            route = {"route": "weights", "served": variant.name}
        ctx.extra["model"] = model
        counter = self._route_counters.get(route["route"])
        if counter is None:
            counter = self._route_counters[route["route"]] = self.defences.routes.labels(
                route=route["route"]
            )
        counter.inc()
        detail = ctx.extra.setdefault("audit_detail", {})
        if isinstance(detail, dict):
            detail["route"] = route
