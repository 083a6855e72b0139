"""Coverage / information-gain monitor (Kesarwani et al. 2018), per group of keys.

The input space is cut into cells (k-means on the reference data, plus one cell for points
far from every centre). A (cell, predicted class) pair the reference data never reaches is
new information about the model's decision regions. The monitor counts the distinct new
pairs a group of keys has revealed; extraction explores them, natural use barely does. The
state is one bitmap per group, so colluding keys of one group are seen together.
"""

from __future__ import annotations

import numpy as np

from bastion.monitor.base import Observation, flag_state, valid_shapes
from bastion.monitor.state import State


class CoverageMonitor:
    """Score = distinct (cell, class) pairs revealed that the reference data never produced."""

    name = "coverage"

    def __init__(
        self,
        z: np.ndarray,
        labels: np.ndarray,
        n_classes: int,
        cells: int = 32,
        threshold: float = 8.0,
        seed: int = 0,
    ) -> None:
        from sklearn.cluster import KMeans

        self.n_classes = n_classes
        km = KMeans(min(cells, len(z)), n_init=1, random_state=seed).fit(z)
        self.centres = km.cluster_centers_.astype(np.float32)
        self.centre_norms = np.einsum("ij,ij->i", self.centres, self.centres)
        radius = np.sqrt(((z - self.centres[km.labels_]) ** 2).sum(axis=1))
        self.far = float(np.quantile(radius, 0.99))
        self.known = np.zeros((len(self.centres) + 1, n_classes), bool)
        self.known[self.cell(z), labels % n_classes] = True
        self.threshold = threshold

    def cell(self, z: np.ndarray) -> np.ndarray:
        z = np.asarray(z, np.float32)
        # |z - c|^2 = |z|^2 + |c|^2 - 2 z.c; the |z|^2 term does not change the argmin
        partial = self.centre_norms[None] - 2 * z @ self.centres.T
        nearest = partial.argmin(axis=1)
        d2 = partial[np.arange(len(z)), nearest] + np.einsum("ij,ij->i", z, z)
        dist = np.sqrt(np.maximum(d2, 0.0))
        return np.where(dist > self.far, len(self.centres), nearest)

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {"seen": self.known.shape, "n": (1,), "flag": (1,)}

    def valid(self, state: State) -> bool:
        return valid_shapes(state, self.shapes())

    def observe(self, state: State | None, z: np.ndarray, labels: np.ndarray) -> Observation:
        st = (
            state
            if state is not None and self.valid(state)
            else {k: np.zeros(s) for k, s in self.shapes().items()}
        )
        was = flag_state(st)
        seen = st["seen"] > 0
        flagged_at = None
        new = ~self.known
        count = int((seen & new).sum())
        for i, (c, y) in enumerate(zip(self.cell(z), labels % self.n_classes, strict=True)):
            if new[c, y] and not seen[c, y]:
                seen[c, y] = True
                count += 1
                if not was and flagged_at is None and count > self.threshold:
                    flagged_at = i
        st["seen"] = seen.astype(np.float64)
        st["n"][0] += len(z)
        if flagged_at is not None:
            st["flag"][0] = 1.0
        return Observation(st, float(count), flag_state(st), flagged_at)
