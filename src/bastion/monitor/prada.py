"""PRADA (Juuti et al. 2019): extraction queries have un-natural distances to each other.

Per class a growing set of the client's queries; every new query's minimum distance to its
class's set is recorded, and the query joins the set when that distance exceeds the class's
threshold (mean minus std of the set's own distances). Natural queries give roughly normally
distributed minimum distances; synthetic ones do not. The key is flagged when a Shapiro-Wilk
test on the distances gives W below delta. Growing sets and the distance window are capped.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import numpy as np

from bastion.monitor.base import Observation, flag_state, valid_shapes
from bastion.monitor.state import State


class Prada:
    """Score = 1 - W (Shapiro-Wilk) over the last `window` minimum distances."""

    name = "prada"

    def __init__(
        self,
        n_classes: int,
        dims: int,
        threshold: float = 0.05,
        min_queries: int = 100,
        set_cap: int = 128,
        window: int = 1000,
        check_every: int = 10,
    ) -> None:
        self.n_classes = n_classes
        self.dims = dims
        self.threshold = threshold
        self.min_queries = min_queries
        self.set_cap = set_cap
        self.window = window
        self.check_every = check_every

    def shapes(self) -> dict[str, tuple[int, ...]]:
        c = self.n_classes
        return {
            "sets": (c, self.set_cap, self.dims),
            "sizes": (c,),
            "set_stats": (c, 3),
            "dist": (self.window,),
            "n": (1,),
            "flag": (1,),
            "score": (1,),
        }

    def valid(self, state: State) -> bool:
        return valid_shapes(state, self.shapes())

    def fresh(self) -> State:
        return {
            k: np.zeros(s, np.float32 if k in ("sets", "dist") else np.float64)
            for k, s in self.shapes().items()
        }

    def observe(self, state: State | None, z: np.ndarray, labels: np.ndarray) -> Observation:
        st = state if state is not None and self.valid(state) else self.fresh()
        was = flag_state(st)
        flagged_at = None
        for i, (row, c) in enumerate(zip(z, labels, strict=True)):
            self._add(st, row.astype(np.float32), int(c) % self.n_classes)
            n = int(st["n"][0])
            due = n >= self.min_queries and (n % self.check_every == 0 or i == len(z) - 1)
            if due:
                st["score"][0] = self._score(st)
                if not flag_state(st) and st["score"][0] > self.threshold:
                    st["flag"][0] = 1.0
                    flagged_at = None if was else i
        return Observation(st, float(st["score"][0]), flag_state(st), flagged_at)

    def _add(self, st: State, row: np.ndarray, c: int) -> None:
        size = int(st["sizes"][c])
        if size == 0:
            st["sets"][c, 0] = row
            st["sizes"][c] = 1
            return
        diff = st["sets"][c, :size] - row
        d = float(np.sqrt(np.einsum("ij,ij->i", diff, diff).min()))
        n = int(st["n"][0])
        st["dist"][n % self.window] = d
        st["n"][0] = n + 1
        count, total, squares = st["set_stats"][c]
        limit = (
            total / count - np.sqrt(max(squares / count - (total / count) ** 2, 0.0))
            if count
            else 0.0
        )
        if d > limit:
            st["set_stats"][c] += (1.0, d, d * d)
            if size < self.set_cap:
                st["sets"][c, size] = row
                st["sizes"][c] = size + 1

    def _score(self, st: State) -> float:
        n = int(st["n"][0])
        dist = st["dist"][: min(n, self.window)].astype(np.float64)
        if np.ptp(dist) <= 1e-12:
            return 1.0  # identical distances: nothing natural about them
        return float(1.0 - _shapiro()(dist).statistic)


@cache
def _shapiro() -> Callable[[np.ndarray], Any]:
    """scipy's Shapiro-Wilk test without its axis/NaN-policy wrapper.

    The wrapper costs several times the test itself on 1000 values, and PRADA runs the test
    on every answered request of a key past `min_queries`; the plain 1-D function underneath
    computes the same statistic (same code). Falls back to the public function if a scipy
    version no longer exposes it.
    """
    from scipy.stats import shapiro

    return getattr(shapiro, "__wrapped__", shapiro)
