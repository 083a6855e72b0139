"""The gateway's detection and response as a `Model` wrapper, for offline measurement.

`Watched` is what one client key sees: every call is observed by the monitor, and once a
detector flags the key its later answers come from the `on_flag` model (a decoy, a label-only
view) instead of the real one. It records after how many queries each detector fired.
"""

from __future__ import annotations

import numpy as np

from bastion.core.model import Model
from bastion.monitor.monitor import Monitor
from bastion.monitor.state import MemoryStore, StateStore


class Watched:
    """One client's view of a monitored model."""

    def __init__(
        self,
        model: Model,
        monitor: Monitor,
        *,
        key: str = "client",
        group: str | None = None,
        store: StateStore | None = None,
        on_flag: Model | None = None,
    ) -> None:
        self.inner = model
        self.monitor = monitor
        self.key = key
        self.group = group or key
        self.store = store or MemoryStore()
        self.on_flag = on_flag
        self.n_classes = model.n_classes
        self.input_shape = model.input_shape
        self.input_bounds = model.input_bounds
        self.queries = 0
        self.flagged_at: dict[str, int] = {}

    @property
    def first_flag(self) -> int | None:
        return min(self.flagged_at.values()) if self.flagged_at else None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        served = self.on_flag if self.on_flag is not None and self.flagged_at else self.inner
        probs = np.asarray(served.predict_proba(arr), dtype=np.float64)
        truth = probs if served is self.inner else self.inner.predict_proba(arr)
        seen = self.monitor.observe(
            self.store, "offline", self.key, self.group, arr, np.asarray(truth).argmax(axis=1)
        )
        for name, obs in seen.items():
            if obs.flagged_at is not None and name not in self.flagged_at:
                self.flagged_at[name] = self.queries + obs.flagged_at + 1
        self.queries += len(arr)
        return probs
