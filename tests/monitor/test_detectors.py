"""Detectors on cancer-logreg: natural streams pass, extraction-like streams are flagged; state
is bounded and a corrupted entry never crashes a detector."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.monitor.monitor import Monitor, fit_monitor
from bastion.monitor.offline import Watched
from bastion.monitor.prada import Prada
from bastion.monitor.state import MemoryStore, RedisStore, decode, encode
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def setup() -> tuple[object, object, object, Monitor]:
    model = build("cancer-logreg")
    train, test = entry("cancer-logreg").load_data()
    return model, train, test, fit_monitor(model, train.x, streams=8)


def test_benign_clients_replaying_test_data_are_not_flagged(setup: tuple) -> None:
    model, _, test, monitor = setup
    rng = np.random.default_rng(0)
    for i in range(10):
        client = Watched(model, monitor, key=f"b{i}")
        rows = rng.permutation(len(test.x))
        for start in range(0, len(rows), 5):
            client.predict_proba(test.x[rows[start : start + 5]])
        assert not client.flagged_at, client.flagged_at


def test_uniform_random_queries_are_flagged_quickly(setup: tuple) -> None:
    model, train, _, monitor = setup
    lo, hi = train.x.min(axis=0), train.x.max(axis=0)
    x = (lo + np.random.default_rng(1).random((200, len(lo))) * (hi - lo)).astype(np.float32)
    client = Watched(model, monitor, key="random")
    for start in range(0, 200, 20):
        client.predict_proba(x[start : start + 20])
    assert client.flagged_at.get("ood") is not None and client.flagged_at["ood"] <= 20


def test_near_duplicate_queries_trip_the_stateful_detector(setup: tuple) -> None:
    model, _, test, monitor = setup
    base = test.x[:1]
    steps = base * (1 + 0.001 * np.random.default_rng(2).standard_normal((60, base.shape[1])))
    client = Watched(model, monitor, key="probe")
    for row in steps.astype(np.float32):
        client.predict_proba(row[None])
    assert client.flagged_at.get("stateful") is not None
    assert client.flagged_at["stateful"] <= 20


def test_coverage_aggregates_the_keys_of_one_group(setup: tuple) -> None:
    _, train, _, monitor = setup
    rng = np.random.default_rng(3)
    x = train.x[rng.integers(0, len(train.x), 400)]
    labels = rng.integers(0, 2, 400)  # answers that disagree with the data: new regions
    store = MemoryStore()
    scores = []
    for i in range(4):  # four colluding keys of one group, 100 queries each
        part = slice(i * 100, (i + 1) * 100)
        seen = monitor.observe(store, "m", f"key{i}", "mallory", x[part], labels[part])
        scores.append(seen["coverage"].score)
    assert scores == sorted(scores) and scores[-1] > scores[0]
    alone = monitor.observe(MemoryStore(), "m", "key3", "key3", x[300:], labels[300:])
    assert scores[-1] > alone["coverage"].score


def test_corrupted_or_foreign_state_is_replaced_not_fatal(setup: tuple) -> None:
    _, _, test, monitor = setup
    store = MemoryStore()
    for det in monitor.detectors:
        store.save(f"m:{det.name}:k", {"flag": np.array([np.nan]), "junk": np.zeros(3)})
    store.save(
        "m:prada:k",
        {k: np.zeros(1) for k in ("sets", "sizes", "set_stats", "dist", "n", "flag", "score")},
    )
    seen = monitor.observe(store, "m", "k", "k", test.x[:5], np.zeros(5, int))
    assert set(seen) == {"prada", "coverage", "stateful", "ood"}
    for det in monitor.detectors:
        assert det.valid(store.load(f"m:{det.name}:k"))  # type: ignore[arg-type]


def test_prada_state_stays_bounded_for_a_long_lived_key() -> None:
    det = Prada(n_classes=2, dims=4, set_cap=16, window=64)
    rng = np.random.default_rng(0)
    state = None
    for _ in range(50):
        obs = det.observe(state, rng.normal(size=(100, 4)), rng.integers(0, 2, 100))
        state = obs.state
    assert state is not None
    assert sum(a.nbytes for a in state.values()) < 4096
    assert state["n"][0] == 5000 - 2  # the first query of each class only seeds its set


def test_memory_store_caps_keys() -> None:
    store = MemoryStore(max_entries=3)
    for i in range(10):
        store.save(f"k{i}", {"n": np.array([i])})
    assert len(store.entries) == 3 and store.load("k0") is None and store.load("k9") is not None


def test_decode_refuses_oversized_and_garbage_blobs() -> None:
    blob = encode({"n": np.arange(10)})
    assert decode(blob) is not None
    assert decode(blob, max_bytes=10) is None
    assert decode(b"not an npz") is None
    assert decode(blob[: len(blob) // 2]) is None


def test_redis_store_round_trip_and_garbage_entry() -> None:
    redis = pytest.importorskip("redis")
    try:
        redis.Redis(socket_connect_timeout=1).ping()
    except Exception:
        pytest.skip("no Redis on 127.0.0.1:6379")
    store = RedisStore(
        "redis://127.0.0.1:6379/0", prefix=f"bastion-test:{np.random.randint(1 << 30)}:"
    )
    store.save("a:1", {"n": np.array([3.0])})
    loaded = store.load("a:1")
    assert loaded is not None and loaded["n"][0] == 3.0
    store.client.set(store.prefix + "a:2", b"\x00garbage")
    assert store.load("a:2") is None
    store.delete("a:")
    assert store.load("a:1") is None


def test_non_finite_values_in_a_large_buffer_do_not_crash() -> None:
    det = Prada(n_classes=2, dims=4, set_cap=16, window=128, min_queries=5, check_every=1)
    rng = np.random.default_rng(0)
    state = det.observe(None, rng.normal(size=(20, 4)), rng.integers(0, 2, 20)).state
    state["sets"][:] = np.nan
    state["dist"][:] = np.inf
    obs = det.observe(state, rng.normal(size=(20, 4)), rng.integers(0, 2, 20))
    assert obs.state["n"][0] > 20


def test_thresholds_are_calibrated_on_rows_the_detectors_were_not_fitted_on() -> None:
    """Streams of the fitted rows score low (their coverage cells are known); calibrating on
    them would leave the coverage threshold at its floor, below what unseen benign rows reach."""
    model = build("digits-mlp")
    train, test = entry("digits-mlp").load_data()
    monitor = fit_monitor(model, train.x, names=["coverage"], streams=4, stream_length=300)
    (coverage,) = monitor.detectors
    z, labels = monitor.embedding(test.x), model.predict_proba(test.x).argmax(axis=1)
    state, peak = None, 0.0
    for start in range(0, len(z), 20):
        obs = coverage.observe(state, z[start : start + 20], labels[start : start + 20])
        state, peak = obs.state, max(peak, obs.score)
    assert peak > 0.0
    assert coverage.threshold > peak
