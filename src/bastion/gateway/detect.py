"""The `detect` stage: every detector scores the key's stream after each answered request."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
from starlette.concurrency import run_in_threadpool

from bastion.gateway.chain import Context, Rejected
from bastion.gateway.defences import defences_of

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway

QUERIES = "queries"


class Detect:
    """Update the detectors with this request's inputs and the model's own labels; on a new
    flag, apply the incident rules (the actions take effect from the next request)."""

    name = "detect"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.defences = defences_of(gateway)

    async def __call__(self, ctx: Context) -> None:
        from bastion.gateway.stages import resolve

        if ctx.principal is None or ctx.inputs is None or ctx.outputs is None:
            return
        dep = resolve(self.gateway, ctx)
        d = self.defences
        monitor = d.monitors.get(dep.name)
        if monitor is None:
            monitor = await run_in_threadpool(d.monitor, dep)
        true_model = ctx.extra.get("true_model")  # a decoy answered: judge by the real labels
        source = ctx.outputs if true_model is None else true_model.predict_proba(ctx.inputs)
        labels = np.asarray(source).argmax(axis=1)
        key_id = ctx.principal.key_id
        try:
            count_state = d.store.load(f"{dep.name}:{QUERIES}:{key_id}")
            before = _count(count_state)
            seen = monitor.observe(
                d.store, dep.name, key_id, f"group-{d.group(ctx)}", ctx.inputs, labels
            )
            d.store.save(
                f"{dep.name}:{QUERIES}:{key_id}", {"n": np.array([before + len(ctx.inputs)])}
            )
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Rejected(503, "store_unavailable", f"detector store: {exc}") from None
        scores = {}
        for name, obs in seen.items():
            d.scores.labels(detector=name).observe(max(obs.score, 0.0))
            scores[name] = round(obs.score, 4)
            if obs.flagged_at is not None:
                d.flags.labels(detector=name).inc()
                d.respond(ctx, name, before + obs.flagged_at + 1)
        ctx.extra["detector_scores"] = scores


def _count(state: dict[str, np.ndarray] | None) -> int:
    try:
        if state is not None and state["n"].shape == (1,) and np.isfinite(state["n"]).all():
            return max(0, int(state["n"][0]))
    except (KeyError, AttributeError, TypeError, ValueError):
        pass
    return 0
