"""What every detector shares: an embedding of the inputs and the per-batch observation."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from bastion.monitor.state import State


@dataclass(frozen=True)
class Observation:
    """A detector's verdict after one batch of a client's queries.

    `score` is the detector's current value for the key (flagged when above `threshold`);
    `flagged_at` is the row of this batch at which the key crossed it (None if it did not
    cross in this batch).
    """

    state: State
    score: float
    flagged: bool
    flagged_at: int | None


class Detector(Protocol):
    """Scores a client's stream of queries; state is a small dict of arrays per key."""

    name: str
    threshold: float

    def observe(self, state: State | None, z: np.ndarray, labels: np.ndarray) -> Observation: ...

    def valid(self, state: State) -> bool: ...


class Embedding:
    """Flattened inputs, centred and scaled (one scale for images, per feature otherwise),
    projected on the top principal directions of the reference data."""

    def __init__(self, x: np.ndarray, image: bool, dims: int = 32) -> None:
        flat = x.reshape(len(x), -1).astype(np.float64)
        self.mean = flat.mean(axis=0)
        std = flat.std(axis=0)
        self.scale = (
            np.full_like(std, max(float(std.mean()), 1e-9))
            if image
            else np.where(std > 1e-9, std, 1.0)
        )
        centred = (flat - self.mean) / self.scale
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        self.components = vt[: min(dims, vt.shape[0])].T.astype(np.float32)

    def standardize(self, x: np.ndarray) -> np.ndarray:
        flat = np.asarray(x, dtype=np.float64).reshape(len(x), -1)
        return ((flat - self.mean) / self.scale).astype(np.float32)

    def __call__(self, x: np.ndarray) -> np.ndarray:
        return self.standardize(x) @ self.components


def flag_state(state: State) -> bool:
    return bool(state["flag"][0])


def valid_shapes(state: State, shapes: dict[str, tuple[int, ...]]) -> bool:
    """True when `state` has exactly these arrays with these shapes and finite values."""
    if not isinstance(state, dict) or state.keys() != shapes.keys():
        return False
    for name, shape in shapes.items():
        arr = state[name]
        if not isinstance(arr, np.ndarray) or arr.shape != shape or arr.dtype.kind not in "fiub":
            return False
        # counters and scores must be finite; large buffers are bounded by their shape, and a
        # non-finite value there only yields non-finite distances, never an exception
        # (checked on Python floats: for a few values that is several times faster)
        small_float = arr.dtype.kind == "f" and arr.size <= 64
        if small_float and not all(map(math.isfinite, arr.ravel().tolist())):
            return False
    return True
