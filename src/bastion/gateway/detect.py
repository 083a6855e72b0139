"""The `detect` stage: every detector scores the key's stream after each answered request.

Requests of one key (and detector group) that reach this stage in the same event-loop turn
are observed together, in arrival order, as one stream segment, at a fraction of the
per-call cost: every row is observed once, as if the requests had come one after another,
except that PRADA, which runs its test every 10 rows and at the end of each observation,
runs the end-of-observation test once per segment, so its flag can come up to 9 rows later
than with the requests apart. A flag is attributed to the request whose row crossed it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from starlette.concurrency import run_in_threadpool

from bastion.gateway.batching import TurnBatch
from bastion.gateway.chain import Context, Rejected
from bastion.gateway.defences import defences_of

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.deploy import Deployment
    from bastion.monitor.monitor import Monitor

QUERIES = "queries"


@dataclass
class _Seen:
    """One request waiting for the detectors."""

    ctx: Context
    dep: Deployment
    monitor: Monitor
    labels: np.ndarray


class Detect:
    """Update the detectors with this request's inputs and the model's own labels; on a new
    flag, apply the incident rules (the actions take effect from the next request)."""

    name = "detect"

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway
        self.defences = defences_of(gateway)
        self._turn: TurnBatch[_Seen, dict[str, float]] = TurnBatch(self._observe_all)
        self._children: dict[str, tuple[Any, Any]] = {}

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
        ctx.extra["detector_scores"] = await self._turn.submit(_Seen(ctx, dep, monitor, labels))

    def _observe_all(self, seen: list[_Seen]) -> list[dict[str, float] | BaseException]:
        """Observe each (model, key, group) stream segment of this turn once."""
        segments: dict[tuple[str, str, str], list[int]] = {}
        for i, item in enumerate(seen):
            assert item.ctx.principal is not None
            owner = (item.dep.name, item.ctx.principal.key_id, self.defences.group(item.ctx))
            segments.setdefault(owner, []).append(i)
        results: list[dict[str, float] | BaseException] = [{} for _ in seen]
        for (model, key_id, group), members in segments.items():
            outcome: dict[str, float] | BaseException
            try:
                outcome = self._observe(model, key_id, group, [seen[i] for i in members])
            except Exception as exc:
                outcome = exc
            for i in members:
                results[i] = outcome
        return results

    def _observe(self, model: str, key_id: str, group: str, items: list[_Seen]) -> dict[str, float]:
        d = self.defences
        inputs = [s.ctx.inputs for s in items if s.ctx.inputs is not None]
        x = inputs[0] if len(inputs) == 1 else np.concatenate(inputs)
        labels = items[0].labels if len(items) == 1 else np.concatenate([s.labels for s in items])
        try:
            before = _count(d.store.load(f"{model}:{QUERIES}:{key_id}"))
            seen = items[0].monitor.observe(d.store, model, key_id, f"group-{group}", x, labels)
            d.store.save(f"{model}:{QUERIES}:{key_id}", {"n": np.array([before + len(x)])})
        except (ConnectionError, TimeoutError, OSError) as exc:
            raise Rejected(503, "store_unavailable", f"detector store: {exc}") from None
        ends = np.cumsum([len(rows) for rows in inputs])
        scores = {}
        for name, obs in seen.items():
            histogram, flags = self._metrics(name)
            for _ in items:
                histogram.observe(max(obs.score, 0.0))
            scores[name] = round(obs.score, 4)
            if obs.flagged_at is not None:
                flags.inc()
                owner = items[int(np.searchsorted(ends, obs.flagged_at, side="right"))]
                d.respond(owner.ctx, name, before + obs.flagged_at + 1)
        return scores

    def _metrics(self, detector: str) -> tuple[Any, Any]:
        """The detector's score histogram and flag counter (label lookups cached)."""
        found = self._children.get(detector)
        if found is None:
            d = self.defences
            found = (d.scores.labels(detector=detector), d.flags.labels(detector=detector))
            self._children[detector] = found
        return found


def _count(state: dict[str, np.ndarray] | None) -> int:
    try:
        if state is not None and state["n"].shape == (1,) and np.isfinite(state["n"]).all():
            return max(0, int(state["n"][0]))
    except (KeyError, AttributeError, TypeError, ValueError):
        pass
    return 0
