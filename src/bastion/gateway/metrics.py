"""Prometheus metrics for the gateway (one registry per app; multiprocess-aware).

Series that name a model (`model` label) belong to that model's tenant; `render` can keep
only those a caller may see, so one registry serves every tenant's operators.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics_core import Metric

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class Metrics:
    """The gateway's counters and histograms."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter(
            "bastion_requests",
            "Requests by action, model, variant and status.",
            ["action", "model", "variant", "status"],
            registry=r,
        )
        self.latency = Histogram(
            "bastion_request_duration_seconds",
            "Request latency through the whole chain.",
            ["action", "model", "variant"],
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.rejections = Counter(
            "bastion_rejections", "Refused requests by reason code.", ["reason"], registry=r
        )
        self.rate_limited = Counter(
            "bastion_rate_limit_hits", "Requests refused by a rate limit.", ["scope"], registry=r
        )
        self.audit_lag = Histogram(
            "bastion_audit_lag_seconds",
            "Time to commit an audit record.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.audit_pending = Gauge(
            "bastion_audit_pending",
            "Audit records queued but not yet committed.",
            registry=r,
            multiprocess_mode="liveall",
        )
        self.audit_failures = Counter(
            "bastion_audit_failures", "Audit records that could not be committed.", registry=r
        )
        self.store_unavailable = Counter(
            "bastion_store_unavailable",
            "Requests that met an unreachable store.",
            ["store"],
            registry=r,
        )
        self.canary_weight = Gauge(
            "bastion_variant_weight",
            "Traffic weight of each model variant.",
            ["model", "variant"],
            registry=r,
            multiprocess_mode="liveall",
        )

        self._children: dict[tuple[str, ...], tuple[Any, Any]] = {}

    def request(self, action: str, model: str, variant: str, status: int) -> tuple[Any, Any]:
        """The request counter and latency histogram of one label set (lookups cached).

        The label values are bounded (actions, served models and variants, statuses), like
        the series Prometheus keeps for them anyway.
        """
        key = (action, model, variant, str(status))
        found = self._children.get(key)
        if found is None:
            found = (self.requests.labels(*key), self.latency.labels(action, model, variant))
            self._children[key] = found
        return found

    def render(self, visible_model: Callable[[str], bool] | None = None) -> bytes:
        """The exposition text; aggregates all workers when PROMETHEUS_MULTIPROC_DIR is set.

        With `visible_model`, a series whose `model` label names a model it refuses is left
        out; series without a model (process, audit, rejections by reason) stay, as they
        aggregate every tenant without naming any model.
        """
        registry = self.registry
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
        if visible_model is None:
            return generate_latest(registry)
        return generate_latest(_ModelFilter(registry, visible_model))


class _ModelFilter:
    """A collector view of `source` without the series of models `visible` refuses."""

    def __init__(self, source: CollectorRegistry, visible: Callable[[str], bool]) -> None:
        self.source = source
        self.visible = visible

    def collect(self) -> Iterator[Metric]:
        for family in self.source.collect():
            kept = Metric(family.name, family.documentation, family.type, family.unit)
            kept.samples = [
                s
                for s in family.samples
                if not s.labels.get("model") or self.visible(s.labels["model"])
            ]
            yield kept
