"""Micro-batching of predict calls: one forward pass per event-loop turn, rows kept apart."""

from __future__ import annotations

import asyncio

import numpy as np
import pytest

from bastion.core.loading import load_model
from bastion.gateway.batching import Batchers, MicroBatcher


class Recording:
    """A small model (softmax of a fixed linear map) that records each batch it is given."""

    n_classes = 3
    input_shape = (4,)
    input_bounds = None

    def __init__(self, fail_on: float | None = None) -> None:
        self.calls: list[int] = []
        self.fail_on = fail_on
        self.w = np.arange(12, dtype=np.float32).reshape(4, 3) / 10

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        if self.fail_on is not None and (x == self.fail_on).any():
            raise ValueError("bad row")
        logits = x @ self.w
        e = np.exp(logits - logits.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


def _rows(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 4)).astype(np.float32)


def test_concurrent_calls_share_one_forward_and_get_their_own_rows() -> None:
    model = Recording()
    batcher = MicroBatcher(model)
    inputs = [_rows(n, seed) for seed, n in enumerate([1, 3, 1, 2])]

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict_proba(x) for x in inputs))

    results = asyncio.run(run())
    assert model.calls == [7]
    for x, got in zip(inputs, results, strict=True):
        np.testing.assert_allclose(got, Recording().predict_proba(x), rtol=1e-6)


def test_a_lone_call_is_answered_alone_in_the_next_loop_turn() -> None:
    model = Recording()
    batcher = MicroBatcher(model)

    async def run() -> None:
        first = await batcher.predict_proba(_rows(1, 0))
        second = await batcher.predict_proba(_rows(2, 1))
        assert first.shape == (1, 3) and second.shape == (2, 3)

    asyncio.run(run())
    assert model.calls == [1, 2]


def test_a_failing_row_fails_only_its_own_request() -> None:
    model = Recording(fail_on=9.0)
    batcher = MicroBatcher(model)
    bad = np.full((1, 4), 9.0, np.float32)

    async def run() -> list[object]:
        calls = [batcher.predict_proba(_rows(1, 0)), batcher.predict_proba(bad)]
        calls.append(batcher.predict_proba(_rows(2, 2)))
        return await asyncio.gather(*calls, return_exceptions=True)

    good, failed, other = asyncio.run(run())
    assert isinstance(failed, ValueError)
    assert isinstance(good, np.ndarray) and good.shape == (1, 3)
    assert isinstance(other, np.ndarray) and other.shape == (2, 3)
    assert model.calls[0] == 4  # the batch was tried first, then each request alone


def test_batches_are_split_at_max_rows() -> None:
    model = Recording()
    batcher = MicroBatcher(model, max_rows=4)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict_proba(_rows(3, s)) for s in range(3)))

    results = asyncio.run(run())
    assert model.calls == [3, 3, 3]
    assert [r.shape for r in results] == [(3, 3)] * 3


def test_a_cancelled_request_does_not_disturb_the_others() -> None:
    model = Recording()
    batcher = MicroBatcher(model)

    async def run() -> np.ndarray:
        doomed = asyncio.ensure_future(batcher.predict_proba(_rows(5, 0)))
        kept = asyncio.ensure_future(batcher.predict_proba(_rows(1, 1)))
        await asyncio.sleep(0)
        doomed.cancel()
        return await kept

    assert asyncio.run(run()).shape == (1, 3)
    assert model.calls == [1]


def test_batched_cnn_answers_match_single_requests() -> None:
    model = load_model("builtin:digits-cnn")
    x = np.random.default_rng(0).random((6, 1, 8, 8)).astype(np.float32)
    batcher = Batchers().of(model)

    async def run() -> list[np.ndarray]:
        return await asyncio.gather(*(batcher.predict_proba(x[i : i + 1]) for i in range(6)))

    batched = np.concatenate(asyncio.run(run()))
    alone = np.concatenate([model.predict_proba(x[i : i + 1]) for i in range(6)])
    np.testing.assert_allclose(batched, alone, rtol=1e-5, atol=1e-6)
    assert (batched.argmax(axis=1) == alone.argmax(axis=1)).all()


@pytest.mark.parametrize("count", [2, 3])
def test_one_batcher_per_model_object(count: int) -> None:
    batchers = Batchers()
    models = [Recording() for _ in range(count)]
    assert len({id(batchers.of(m)) for m in models}) == count
    assert batchers.of(models[0]) is batchers.of(models[0])
