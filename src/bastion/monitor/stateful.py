"""Stateful detection of query-based attacks (Chen, Carlini and Wagner 2020).

Black-box evasion (Square, HopSkipJump) asks about many nearly identical inputs. Each query's
mean distance to its k nearest neighbours among the client's recent queries is compared with
a threshold set on the reference (training) data: the distance below which only a small
quantile of natural inputs' k-NN means fall. The key is flagged after `hits_to_flag` hits.
"""

from __future__ import annotations

import numpy as np

from bastion.monitor.base import Observation, flag_state, valid_shapes
from bastion.monitor.state import State


def knn_mean_threshold(z: np.ndarray, k: int, quantile: float = 0.001) -> float:
    """The `quantile` of each reference point's mean distance to its k nearest other points."""
    sq = (z**2).sum(axis=1)
    d2 = np.maximum(sq[:, None] + sq[None, :] - 2.0 * z @ z.T, 0.0)
    np.fill_diagonal(d2, np.inf)
    nearest = np.sqrt(np.sort(d2, axis=1)[:, :k])
    return float(np.quantile(nearest.mean(axis=1), quantile))


class StatefulDetector:
    """Score = queries whose k-NN mean distance fell below `distance` (flag over `threshold`)."""

    name = "stateful"

    def __init__(
        self, dims: int, distance: float, k: int = 10, buffer: int = 256, threshold: float = 2.0
    ) -> None:
        self.dims = dims
        self.distance = distance
        self.k = k
        self.buffer = buffer
        self.threshold = threshold

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {
            "buffer": (self.buffer, self.dims),
            "n": (1,),
            "hits": (1,),
            "flag": (1,),
        }

    def valid(self, state: State) -> bool:
        return valid_shapes(state, self.shapes())

    def fresh(self) -> State:
        return {
            k: np.zeros(s, np.float32 if k == "buffer" else np.float64)
            for k, s in self.shapes().items()
        }

    def observe(self, state: State | None, z: np.ndarray, labels: np.ndarray) -> Observation:
        st = state if state is not None and self.valid(state) else self.fresh()
        was = flag_state(st)
        flagged_at = None
        buf = st["buffer"]
        for i, row in enumerate(z.astype(np.float32)):
            n = int(st["n"][0])
            held = min(n, self.buffer)
            if held >= self.k:
                diff = buf[:held] - row
                d2 = np.einsum("ij,ij->i", diff, diff)
                mean = float(np.sqrt(np.partition(d2, self.k - 1)[: self.k]).mean())
                if mean < self.distance:
                    st["hits"][0] += 1
            buf[n % self.buffer] = row
            st["n"][0] = n + 1
            if not flag_state(st) and st["hits"][0] > self.threshold:
                st["flag"][0] = 1.0
                flagged_at = None if was else i
        return Observation(st, float(st["hits"][0]), flag_state(st), flagged_at)
