"""Micro-batching: work that concurrent requests reach in the same event-loop turn runs once.

A request queues its item and waits; the first item of a turn schedules a flush with
`call_soon`, so every request that reaches the same point in that turn joins the batch and
a lone request waits one loop turn, nothing more (no timer, no added latency at low load).
`MicroBatcher` uses it for model calls: a model's rows are independent (the `Model`
contract), so each caller gets exactly the rows it sent, answered as if alone (up to float
rounding of batched kernels). If the batched call fails, each caller's rows are retried
alone so a failure reaches only the request that caused it.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import numpy as np

from bastion.core.model import Model

T = TypeVar("T")
R = TypeVar("R")
MAX_ROWS = 256  # rows per forward pass; more waiting rows are split over several passes


class TurnBatch(Generic[T, R]):
    """Hands the items submitted in one event-loop turn to `process` as one list.

    `process` returns one result per item, in order: a value, or an exception that is
    raised in that item's caller only. Items whose caller was cancelled are left out.
    """

    def __init__(self, process: Callable[[list[T]], list[R | BaseException]]) -> None:
        self.process = process
        self._pending: list[tuple[T, asyncio.Future[R]]] = []
        self._scheduled = False

    async def submit(self, item: T) -> R:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[R] = loop.create_future()
        self._pending.append((item, future))
        if not self._scheduled:
            self._scheduled = True
            loop.call_soon(self._flush)
        return await future

    def _flush(self) -> None:
        pending, self._pending = self._pending, []
        self._scheduled = False
        live = [(item, future) for item, future in pending if not future.done()]
        if not live:
            return
        try:
            results = self.process([item for item, _ in live])
        except Exception as exc:  # a bug in `process`: every caller sees it, none hangs
            results = [exc] * len(live)
        for (_, future), result in zip(live, results, strict=True):
            if future.done():
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)


class MicroBatcher:
    """Coalesces the predict calls on one model made in the same event-loop turn."""

    def __init__(self, model: Model, max_rows: int = MAX_ROWS) -> None:
        self.model = model
        self.max_rows = max_rows
        self._turn: TurnBatch[np.ndarray, np.ndarray] = TurnBatch(self._process)

    async def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """The model's probabilities for `x`, computed in a batch with concurrent calls."""
        return await self._turn.submit(x)

    def _process(self, inputs: list[np.ndarray]) -> list[np.ndarray | BaseException]:
        out: list[np.ndarray | BaseException] = []
        group: list[np.ndarray] = []
        rows = 0
        for x in inputs:
            if group and rows + len(x) > self.max_rows:
                out += self._run(group)
                group, rows = [], 0
            group.append(x)
            rows += len(x)
        return out + self._run(group) if group else out

    def _run(self, group: list[np.ndarray]) -> list[np.ndarray | BaseException]:
        if len(group) > 1:
            try:
                probs = self.model.predict_proba(np.concatenate(group))
            except Exception:
                pass  # retried one by one below, so the failure reaches only its request
            else:
                bounds = np.cumsum([0, *(len(x) for x in group)])
                return [probs[a:b] for a, b in itertools.pairwise(bounds)]
        return [_alone(self.model, x) for x in group]


def _alone(model: Model, x: np.ndarray) -> np.ndarray | BaseException:
    try:
        return model.predict_proba(x)
    except Exception as exc:
        return exc


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
