"""Out-of-distribution inputs: Mahalanobis distance to the reference data.

Mean and covariance (with a small ridge, so that directions in which the data barely varies
count) are fitted on the embedded reference inputs; a query is out of distribution above the
`quantile` of held-out reference distances. A key is flagged when its OOD queries exceed
`rate` times its queries by more than the slack (`threshold`): natural traffic stays near
1 - quantile, synthetic extraction queries (noise, mixup, gradient steps) land far above.
"""

from __future__ import annotations

import numpy as np

from bastion.monitor.base import Observation, flag_state, valid_shapes
from bastion.monitor.state import State


class MahalanobisOOD:
    """Score = OOD queries - rate * queries (flag above `threshold`, the slack)."""

    name = "ood"

    def __init__(
        self,
        reference: np.ndarray,
        held_out: np.ndarray,
        quantile: float = 0.9,
        rate: float = 0.3,
        threshold: float = 6.0,
        ridge: float = 1e-3,
    ) -> None:
        ref = np.asarray(reference, np.float64)
        cov = np.cov(ref.T).reshape(ref.shape[1], ref.shape[1])
        cov += ridge * max(float(np.trace(cov)) / len(cov), 1e-12) * np.eye(len(cov))
        self.mean = ref.mean(axis=0).astype(np.float32)
        self.precision = np.linalg.inv(cov).astype(np.float32)
        self.cutoff = float(np.quantile(self.distance(held_out), quantile))
        self.rate = rate
        self.threshold = threshold

    def distance(self, x: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each standardized row."""
        c = np.asarray(x, np.float32) - self.mean
        return np.sqrt(np.maximum(np.einsum("ij,ij->i", c @ self.precision, c), 0.0))

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"n": (1,), "ood": (1,), "flag": (1,)}

    def valid(self, state: State) -> bool:
        return valid_shapes(state, self.shapes())

    def observe(self, state: State | None, z: np.ndarray, labels: np.ndarray) -> Observation:
        st = (
            state
            if state is not None and self.valid(state)
            else {k: np.zeros(s) for k, s in self.shapes().items()}
        )
        was = flag_state(st)
        outside = self.distance(z) > self.cutoff
        n0, o0 = st["n"][0], st["ood"][0]
        excess = (o0 + np.cumsum(outside)) - self.rate * (n0 + np.arange(1, len(z) + 1))
        st["n"][0] = n0 + len(z)
        st["ood"][0] = o0 + outside.sum()
        flagged_at = None
        if not was:
            over = np.flatnonzero(excess > self.threshold)
            if len(over):
                st["flag"][0] = 1.0
                flagged_at = int(over[0])
        score = float(st["ood"][0] - self.rate * st["n"][0])
        return Observation(st, score, flag_state(st), flagged_at)
