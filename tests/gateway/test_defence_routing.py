"""Moving-target pool and throttling in a real gateway; the pool and decoy as Model wrappers."""

from __future__ import annotations

from typing import Any

import numpy as np
from gateway_helpers import INFER, MODEL

from bastion.core.loading import load_model
from bastion.defenses.moving_target import Decoy, MovingTargetPool, derangement, keyed_index


def body(x: np.ndarray) -> dict[str, Any]:
    data = x.ravel().tolist()
    return {"inputs": [{"name": "input", "shape": list(x.shape), "datatype": "FP32", "data": data}]}


def test_pool_serves_each_input_from_one_keyed_member(serve: Any) -> None:
    models = [
        {"name": MODEL, "spec": f"builtin:{MODEL}", "variant": "a"},
        {"name": MODEL, "spec": "builtin:digits-mlp", "variant": "b"},
    ]
    gw = serve(
        models=models,
        chain={"stages": ["authenticate", "validate", "defend_route", "predict"]},
        defences={"routing": {"pool": ["a", "b"]}},
    )
    client = gw.client(gw.key())
    xs = np.random.default_rng(0).random((40, 1, 1, 8, 8)).astype(np.float32)
    served = [client.post(INFER, json=body(x)).json()["model_version"] for x in xs]
    assert set(served) == {"a", "b"}  # traffic spread over the pool
    again = [client.post(INFER, json=body(x)).json()["model_version"] for x in xs[:10]]
    assert again == served[:10]  # the same input always reaches the same member


def test_throttled_key_is_spaced_out(serve: Any) -> None:
    gw = serve(
        chain={
            "stages": ["authenticate", "validate", "enforce", "defend_route", "predict", "detect"]
        },
        defences={"incidents": {"rules": [{"actions": ["throttle"]}], "throttle_seconds": 60}},
    )
    raw, _ = gw.gateway.keys.create("t:1", "client", "default")
    client = gw.client(raw)
    noise = np.random.default_rng(1).random((64, 1, 8, 8)).astype(np.float32)
    assert client.post(INFER, json=body(noise)).status_code == 200  # flagged (out of distribution)
    codes = [client.post(INFER, json=body(noise[:1])).status_code for _ in range(3)]
    assert codes[0] == 200 and codes[1:] == [429, 429]


def test_pool_and_decoy_wrappers() -> None:
    a, b = load_model(f"builtin:{MODEL}"), load_model("builtin:digits-mlp")
    x = np.random.default_rng(2).random((50, 1, 8, 8)).astype(np.float32)
    pool = MovingTargetPool([a, b], b"k" * 32)
    pick = keyed_index(b"k" * 32, x, 2)
    out = pool.predict_proba(x)
    np.testing.assert_allclose(out[pick == 0], a.predict_proba(x[pick == 0]), atol=1e-6)
    np.testing.assert_allclose(out[pick == 1], b.predict_proba(x[pick == 1]), atol=1e-6)
    perm = derangement(b"k" * 32, 10)
    assert sorted(perm) == list(range(10)) and not (perm == np.arange(10)).any()
    decoy = Decoy(a, b"k" * 32)
    assert (decoy.predict_proba(x).argmax(axis=1) != a.predict_proba(x).argmax(axis=1)).all()
