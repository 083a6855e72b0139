"""Shared runtime of the defence stages: detector state, fitted monitors, incidents, metrics.

One `Defences` per gateway (created by the first defence stage); it holds no per-client state
of its own beyond caches: detector state and incidents live in the configured store.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import json
import logging
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from prometheus_client import Counter, Histogram

from bastion.core.errors import BastionError, ConfigError
from bastion.gateway.chain import Context, Rejected
from bastion.gateway.store import gateway_dir, server_secret
from bastion.monitor.incidents import Incident, IncidentBook
from bastion.monitor.monitor import Monitor, fit_monitor
from bastion.monitor.state import StateStore, open_store

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway
    from bastion.gateway.deploy import Deployment

log = logging.getLogger("bastion.incidents")
SCORE_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32, 64, 128)
_BY_GATEWAY: weakref.WeakKeyDictionary[Any, Defences] = weakref.WeakKeyDictionary()


def defences_of(gw: Gateway) -> Defences:
    """The gateway's defence runtime (created once)."""
    found = _BY_GATEWAY.get(gw)
    if found is None:
        found = _BY_GATEWAY[gw] = Defences(gw)
    return found


class Defences:
    """Detector state store, monitors per model, the incident book, keyed secrets, metrics."""

    def __init__(self, gw: Gateway) -> None:
        config = gw.config.defences
        self.gw = gw
        self.config = config
        self.store: StateStore = open_store(config.detect.state, config.detect.max_keys)
        self.book = IncidentBook(self.store, tuple(config.detect.detectors))
        self.secret = server_secret(gw.state_dir, gw.config.auth.secret_file)
        self.monitors: dict[str, Monitor] = {}
        self._fit_lock = threading.Lock()
        self.pairs_file = config.watermark.pairs_file or gateway_dir(gw.state_dir) / "dawn.jsonl"
        registry = gw.metrics.registry
        self.scores = Histogram(
            "bastion_detector_score",
            "Per-request detector score of the requesting key.",
            ["detector"],
            buckets=SCORE_BUCKETS,
            registry=registry,
        )
        self.flags = Counter(
            "bastion_detector_flags", "Keys flagged, by detector.", ["detector"], registry=registry
        )
        self.actions = Counter(
            "bastion_incident_actions", "Incident actions taken.", ["action"], registry=registry
        )
        self.routes = Counter(
            "bastion_defence_routes", "Requests by routing decision.", ["route"], registry=registry
        )
        self.watermarked = Counter(
            "bastion_dawn_watermarked",
            "Answers altered by the response watermark.",
            registry=registry,
        )

    def key(self, purpose: bytes) -> bytes:
        """A secret for one purpose, derived from the gateway's server secret."""
        return hmac.new(self.secret, b"bastion-defence:" + purpose, hashlib.sha256).digest()

    def monitor(self, dep: Deployment) -> Monitor:
        """The fitted monitor of a model (fitted on first use from its reference data)."""
        found = self.monitors.get(dep.name)
        if found is not None:
            return found
        with self._fit_lock:
            if dep.name not in self.monitors:
                x = reference_inputs(dep, self.config.detect.references.get(dep.name))
                self.monitors[dep.name] = fit_monitor(
                    dep.signature, x, self.config.detect.detectors, seed=self.config.detect.seed
                )
        return self.monitors[dep.name]

    def group(self, ctx: Context) -> str:
        """The group whose keys the coverage monitor aggregates."""
        principal = ctx.principal
        if principal is None:
            return "anonymous"
        how = self.config.detect.group_by
        if how == "tenant":
            return principal.tenant
        if how == "name-prefix":
            name = getattr(principal, "name", None) or principal.key_id
            return name.split(":", 1)[0] if ":" in name else principal.key_id
        return principal.key_id

    def incident(self, ctx: Context) -> Incident | None:
        if ctx.principal is None:
            return None
        cached = ctx.extra.get("incident", False)
        if cached is not False:
            return cached
        try:
            found = self.book.get(ctx.principal.key_id)
        except Exception:
            raise Rejected(503, "store_unavailable", "the detector store is unreachable") from None
        ctx.extra["incident"] = found
        return found

    def respond(self, ctx: Context, detector: str, queries: int) -> Incident:
        """Apply the rules for `detector` flagging this key; audit and notify."""
        assert ctx.principal is not None
        actions = sorted(
            {
                a
                for rule in self.config.incidents.rules
                if rule.detector in ("any", detector)
                for a in rule.actions
            }
        )
        found = self.book.open(ctx.principal.key_id, actions, detector, queries)
        ctx.extra["incident"] = found
        for action in actions:
            self.actions.labels(action=action).inc()
        detail = ctx.extra.setdefault("audit_detail", {})
        if isinstance(detail, dict):
            detail.setdefault("incidents", []).append(
                {"detector": detector, "actions": actions, "queries": queries}
            )
        if "notify" in actions:
            self.notify({"event": "key_flagged", **found.public(), "detector": detector})
        return found

    def notify(self, event: dict[str, Any]) -> None:
        """Log the event and, if configured, POST it to the webhook (in the background)."""
        log.warning("incident: %s", json.dumps(event, sort_keys=True))
        url = self.config.incidents.webhook
        if url:
            with contextlib.suppress(RuntimeError):
                asyncio.get_running_loop().create_task(_post(url, event))


async def _post(url: str, event: dict[str, Any]) -> None:
    import httpx

    try:
        async with httpx.AsyncClient(timeout=5.0) as client:
            await client.post(url, json=event)
    except httpx.HTTPError as exc:
        log.error("incident webhook %s failed: %s", url, exc)


def reference_inputs(dep: Deployment, reference: str | None) -> np.ndarray:
    """The reference (training) inputs of a model: `builtin:NAME`, a data file, or the zoo
    data of a model served as `builtin:NAME`."""
    if reference is None:
        specs = [v.spec for v in dep.variants.values() if v.spec.startswith("builtin:")]
        if not specs:
            raise ConfigError(
                f"model {dep.name!r} has no reference data for its detectors",
                fix=f'set [defences.detect] references = {{ "{dep.name}" = "data.npz" }}',
            )
        reference = specs[0]
    try:
        if reference.startswith("builtin:"):
            from bastion.zoo import entry

            return entry(reference.removeprefix("builtin:")).load_data()[0].x
        from bastion.core.dataset import load_dataset

        return load_dataset(Path(reference)).x
    except BastionError:
        raise
    except Exception as exc:
        raise ConfigError(
            f"cannot read reference data {reference!r}: {exc}", fix="check it"
        ) from exc
