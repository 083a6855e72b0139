"""Incident state per key: which actions are in force, when, and why; reversible by an operator.

Kept in the detector state store (so every replica enforces the same actions) as a small
array record per key; a corrupted record reads as "no incident" rather than crashing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bastion.monitor.state import State, StateStore, names_in

ACTIONS = ("notify", "throttle", "label-only", "decoy", "revoke")
PREFIX = "incident:"


@dataclass(frozen=True)
class Incident:
    """The actions in force on one key and what triggered them."""

    key_id: str
    actions: tuple[str, ...]
    since: float
    queries: int  # the key's query count when it was flagged
    detectors: tuple[str, ...]

    def public(self) -> dict[str, object]:
        return {
            "key_id": self.key_id,
            "actions": list(self.actions),
            "since": self.since,
            "queries_at_flag": self.queries,
            "detectors": list(self.detectors),
        }


def _valid(state: State, n_detectors: int) -> bool:
    shapes = {"actions": (len(ACTIONS),), "meta": (3,), "detectors": (n_detectors,)}
    return state.keys() == shapes.keys() and all(
        isinstance(state[k], np.ndarray) and state[k].shape == s for k, s in shapes.items()
    )


class IncidentBook:
    """Read, open, extend and close incidents in a `StateStore`."""

    def __init__(self, store: StateStore, detectors: tuple[str, ...]) -> None:
        self.store = store
        self.detectors = detectors

    def get(self, key_id: str) -> Incident | None:
        state = self.store.load(PREFIX + key_id)
        if state is None or not _valid(state, len(self.detectors)):
            return None
        acts = tuple(a for a, on in zip(ACTIONS, state["actions"].tolist(), strict=True) if on)
        dets = tuple(
            d for d, on in zip(self.detectors, state["detectors"].tolist(), strict=True) if on
        )
        return Incident(key_id, acts, float(state["meta"][0]), int(state["meta"][1]), dets)

    def open(self, key_id: str, actions: Sequence[str], detector: str, queries: int) -> Incident:
        """Add `actions` (from `detector` firing at `queries`) to the key's incident."""
        state = self.store.load(PREFIX + key_id)
        if state is None or not _valid(state, len(self.detectors)):
            state = {
                "actions": np.zeros(len(ACTIONS)),
                "meta": np.array([time.time(), queries, 0.0]),
                "detectors": np.zeros(len(self.detectors)),
            }
        for action in actions:
            state["actions"][ACTIONS.index(action)] = 1.0
        if detector in self.detectors:
            state["detectors"][self.detectors.index(detector)] = 1.0
        self.store.save(PREFIX + key_id, state)
        found = self.get(key_id)
        assert found is not None
        return found

    def throttled(self, key_id: str, interval: float) -> bool:
        """True if the key asked less than `interval` seconds ago (then the request is refused)."""
        state = self.store.load(PREFIX + key_id)
        if state is None or not _valid(state, len(self.detectors)):
            return False
        now = time.time()
        if now - float(state["meta"][2]) < interval:
            return True
        state["meta"][2] = now
        self.store.save(PREFIX + key_id, state)
        return False

    def close(self, key_id: str) -> Incident | None:
        """Lift every action on the key and forget its detector state (a fresh start)."""
        found = self.get(key_id)
        self.store.delete(PREFIX + key_id)
        for name in names_in(self.store, ""):
            if name.endswith(":" + key_id) and not name.startswith(PREFIX):
                self.store.delete(name)
        return found

    def all(self) -> list[Incident]:
        out = []
        for name in names_in(self.store, PREFIX):
            found = self.get(name.removeprefix(PREFIX))
            if found is not None:
                out.append(found)
        return sorted(out, key=lambda i: i.since)
