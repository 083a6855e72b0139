"""Moving-target serving and decoys: which model answers a query.

`keyed_index` picks one of N models per input with an HMAC, so a repeated query always
reaches the same member (no averaging across the pool) and nobody without the key can aim
at one member. `MovingTargetPool` is that choice as a `Model`; `Decoy` is the deliberately
perturbed variant served to flagged clients: a keyed derangement of the classes, so a clone
trained on its answers agrees with the real model almost nowhere.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.model import Model


def keyed_index(key: bytes, x: np.ndarray, n: int) -> np.ndarray:
    """Per row of `x`, an index in [0, n) from HMAC(key, row bytes)."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    return np.array(
        [
            int.from_bytes(hmac.new(key, r.tobytes(), hashlib.sha256).digest()[:8], "big") % n
            for r in rows
        ],
        dtype=np.int64,
    )


class MovingTargetPool:
    """Each query answered by one of several diverse models with the same signature."""

    def __init__(self, models: list[Model], key: bytes) -> None:
        if not models:
            raise ConfigError("a moving-target pool needs at least one model", fix="add models")
        first = models[0]
        if any(
            m.n_classes != first.n_classes or m.input_shape != first.input_shape for m in models
        ):
            raise ConfigError(
                "moving-target models differ in input shape or classes",
                fix="pool only variants of one model",
            )
        self.models = models
        self.key = key
        self.n_classes = first.n_classes
        self.input_shape = first.input_shape
        self.input_bounds = first.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        pick = keyed_index(self.key, arr, len(self.models))
        out = np.zeros((len(arr), self.n_classes))
        for i, model in enumerate(self.models):
            rows = np.flatnonzero(pick == i)
            if len(rows):
                out[rows] = model.predict_proba(arr[rows])
        return out


def derangement(key: bytes, n: int) -> np.ndarray:
    """A keyed permutation of range(n) with no fixed point (n >= 2)."""
    seed = int.from_bytes(hmac.new(key, b"decoy-permutation", hashlib.sha256).digest()[:8], "big")
    rng = np.random.default_rng(seed)
    while True:
        perm = rng.permutation(n)
        if not (perm == np.arange(n)).any():
            return perm


class Decoy:
    """The model's answers with classes relabelled by a keyed derangement: plausible-looking
    confident answers that teach a clone the wrong model."""

    def __init__(self, model: Model, key: bytes) -> None:
        if model.n_classes < 2:
            raise ConfigError("a decoy needs at least two classes", fix="serve no decoy")
        self.inner = model
        self.perm = derangement(key, model.n_classes)
        self.n_classes = model.n_classes
        self.input_shape = model.input_shape
        self.input_bounds = model.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probs = np.asarray(self.inner.predict_proba(x), dtype=np.float64)
        out = np.empty_like(probs)
        out[:, self.perm] = probs
        return out
