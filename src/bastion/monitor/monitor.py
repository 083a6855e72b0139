"""A fitted set of detectors for one model: embedding, detectors, thresholds from reference data.

`fit_monitor` fits every detector on 80% of the model's reference (training) inputs, then
replays benign streams of the other 20% (rows no detector was fitted on, like real clients'
inputs) through each and raises any threshold such a stream would cross (with a margin).
PRADA, which fits nothing on the reference rows, is calibrated on all of them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from bastion.core.errors import ConfigError, DataError
from bastion.core.model import Model, predict_labels
from bastion.monitor.base import Detector, Embedding, Observation
from bastion.monitor.coverage import CoverageMonitor
from bastion.monitor.ood import MahalanobisOOD
from bastion.monitor.prada import Prada
from bastion.monitor.state import StateStore
from bastion.monitor.stateful import StatefulDetector, knn_mean_threshold

DETECTORS = ("prada", "coverage", "stateful", "ood")
GROUP_DETECTORS = frozenset({"coverage"})  # state shared by the keys of one group


@dataclass
class Monitor:
    """The detectors of one model and the embedding they share."""

    embedding: Embedding
    detectors: list[Detector]

    @property
    def names(self) -> list[str]:
        return [d.name for d in self.detectors]

    def observe(
        self, store: StateStore, scope: str, key: str, group: str, x: np.ndarray, labels: np.ndarray
    ) -> dict[str, Observation]:
        """Update every detector's state for this key (or its group) with one batch."""
        z = self.embedding(x)
        out = {}
        for det in self.detectors:
            owner = group if det.name in GROUP_DETECTORS else key
            name = f"{scope}:{det.name}:{owner}"
            obs = det.observe(store.load(name), z, labels)
            store.save(name, obs.state)
            out[det.name] = obs
        return out


def fit_monitor(
    model: Model,
    reference_x: np.ndarray,
    names: Sequence[str] = DETECTORS,
    *,
    seed: int = 0,
    streams: int = 20,
    stream_length: int = 300,
) -> Monitor:
    """Fit the named detectors on `reference_x` (the model's training inputs) and calibrate."""
    unknown = [n for n in names if n not in DETECTORS]
    if unknown:
        raise ConfigError(
            f"unknown detector {unknown[0]!r}", fix=f"choose from {', '.join(DETECTORS)}"
        )
    x = np.asarray(reference_x, np.float32)
    if len(x) < 50:
        raise DataError(
            f"{len(x)} reference inputs are too few to fit detectors",
            fix="give >= 50 training inputs",
        )
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(x))
    cut = int(0.8 * len(x))
    fit_idx, held_idx = order[:cut], order[cut:]
    embedding = Embedding(x[fit_idx], image=len(model.input_shape) == 3)
    z = embedding(x)
    labels = predict_labels(model, x)
    dims = z.shape[1]
    detectors: list[Detector] = []
    for name in names:
        if name == "prada":
            detectors.append(Prada(model.n_classes, dims))
        elif name == "stateful":
            detectors.append(StatefulDetector(dims, knn_mean_threshold(z[fit_idx], 10)))
        elif name == "ood":
            detectors.append(MahalanobisOOD(z[fit_idx], z[held_idx]))
        else:
            detectors.append(
                CoverageMonitor(z[fit_idx], labels[fit_idx], model.n_classes, seed=seed)
            )
    # Detectors fitted on reference rows calibrate on rows they never saw: fitted rows all fall
    # in known coverage cells and near their own neighbours, so their scores understate unseen
    # benign traffic. PRADA learns nothing from the reference rows (its state is the client's
    # own queries), so every row is unseen to it and it calibrates on all of them.
    _calibrate([d for d in detectors if d.name == "prada"], z, labels, rng, streams, stream_length)
    fitted = [d for d in detectors if d.name != "prada"]
    _calibrate(fitted, z[held_idx], labels[held_idx], rng, streams, stream_length)
    return Monitor(embedding, detectors)


def _calibrate(
    detectors: list[Detector],
    z: np.ndarray,
    labels: np.ndarray,
    rng: np.random.Generator,
    streams: int,
    length: int,
) -> None:
    """Raise each threshold above the highest score a benign stream of the held-out rows `z`
    reached (with margin)."""
    length = min(length, len(z))
    peaks = {d.name: 0.0 for d in detectors}
    for _ in range(streams):
        rows = rng.choice(len(z), length, replace=False)
        states: dict[str, object] = {}
        for start in range(0, length, 32):
            part = rows[start : start + 32]
            for det in detectors:
                obs = det.observe(states.get(det.name), z[part], labels[part])  # type: ignore[arg-type]
                states[det.name] = obs.state
                peaks[det.name] = max(peaks[det.name], obs.score)
    for det in detectors:
        peak = peaks[det.name]
        if det.name == "prada":
            det.threshold = max(det.threshold, 1.5 * peak)
        elif det.name == "coverage":
            det.threshold = max(det.threshold, 1.5 * peak + 2.0)
        else:
            det.threshold = max(det.threshold, peak + 2.0)
