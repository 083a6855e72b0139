"""Micro-batching: concurrent small predict calls on one model share one forward pass.

A call queues its rows and waits; the first call of an event-loop turn schedules a flush
with `call_soon`, so every request that reaches `predict` in the same turn joins the batch
and a lone request waits one loop turn, nothing more (no timer, no added latency at low
load). A model's rows are independent (the `Model` contract), so each caller gets exactly
the rows it sent, answered as if alone (up to float rounding of batched kernels). If the
batched call fails, each caller's rows are retried alone so a failure reaches only the
request that caused it.
"""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np

from bastion.core.model import Model

MAX_ROWS = 256  # rows per forward pass; more waiting rows are split over several passes


class MicroBatcher:
    """Coalesces the predict calls on one model made in the same event-loop turn."""

    def __init__(self, model: Model, max_rows: int = MAX_ROWS) -> None:
        self.model = model
        self.max_rows = max_rows
        self._pending: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        self._scheduled = False

    async def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities for `x`, computed in a batch with concurrent calls."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[np.ndarray] = loop.create_future()
        self._pending.append((x, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._scheduled = False
        group: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]] = []
        rows = 0
        for item in pending:
            if group and rows + len(item[0]) > self.max_rows:
                self._run(group)
                group, rows = [], 0
            group.append(item)
            rows += len(item[0])
        if group:
            self._run(group)

    def _run(self, group: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        live = [(x, f) for x, f in group if not f.done()]  # skip cancelled requests
        if not live:
            return
        if len(live) == 1:
            _settle(live[0][1], self.model, live[0][0])
            return
        try:
            probs = self.model.predict_proba(np.concatenate([x for x, _ in live]))
        except Exception:
            for x, future in live:
                _settle(future, self.model, x)
            return
        start = 0
        for x, future in live:
            future.set_result(probs[start : start + len(x)])
            start += len(x)


def _settle(future: asyncio.Future[np.ndarray], model: Model, x: np.ndarray) -> None:
    try:
        future.set_result(model.predict_proba(x))
    except Exception as exc:
        future.set_exception(exc)


class Batchers:
    """One `MicroBatcher` per model object (variants, decoys and pool members alike)."""

    def __init__(self) -> None:
        self._by_model: dict[int, tuple[Any, MicroBatcher]] = {}

    def of(self, model: Model) -> MicroBatcher:
        found = self._by_model.get(id(model))
        if found is None or found[0] is not model:
            if len(self._by_model) > 1024:  # models replaced by redeployments: drop the old
                self._by_model.clear()
            found = (model, MicroBatcher(model))
            self._by_model[id(model)] = found
        return found[1]
