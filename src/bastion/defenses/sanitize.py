"""Training-data sanitisation: find poisoned rows before (re)training.

- `spectral_signatures` (Tran et al. 2018): within each class, poisons that share a
  trigger stretch the top singular direction of the centred representations; rows with
  large projections are suspect.
- `activation_clustering` (Chen et al. 2018): within each class, split the representations
  in two; a small cluster whose members look like *another* class (exclusionary
  reclassification) is poison.
- `knn_label_consistency`: a row whose nearest neighbours mostly carry another label was
  likely flipped.

Each returns a `SanitizeResult` with a score per row, the suspect rows and the cleaned set.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from bastion.attacks.poisoning.features import Layer, features
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model

METHODS = ("spectral", "activation", "knn")
# Ashman's D above which a class's top-direction projections count as two groups: clean digits
# classes measured 2.5-5.1, BadNets-poisoned ones 6.6-7.6 (docs/training-time.md)
SEPARATION = 5.8


@dataclass(frozen=True)
class SanitizeResult:
    """Suspect rows (ascending indices) with a score for every row (higher = more suspect)."""

    method: str
    scores: np.ndarray
    suspect_index: np.ndarray
    cleaned: Dataset = field(repr=False)
    details: dict[str, object] = field(default_factory=dict)

    def recall(self, is_poison: np.ndarray) -> float:
        """The fraction of true poison rows flagged."""
        flagged = self.flags
        return float(flagged[is_poison].mean()) if is_poison.any() else 1.0

    def clean_removed(self, is_poison: np.ndarray) -> float:
        """The fraction of clean rows flagged."""
        flagged = self.flags
        return float(flagged[~is_poison].mean()) if (~is_poison).any() else 0.0

    @property
    def flags(self) -> np.ndarray:
        mask = np.zeros(len(self.scores), dtype=bool)
        mask[self.suspect_index] = True
        return mask


def _labels(data: Dataset) -> np.ndarray:
    if data.y is None:
        raise DataError(
            "sanitisation needs the training labels", fix="provide labels (y) with the data"
        )
    if len(data) < 2:
        raise DataError("sanitisation needs at least two rows", fix="pass the whole training set")
    return data.labels


def _result(
    method: str, data: Dataset, scores: np.ndarray, flags: np.ndarray, **details: object
) -> SanitizeResult:
    index = np.flatnonzero(flags)
    return SanitizeResult(method, scores, index, data.subset(~flags), dict(details))


def spectral_signatures(
    model: Model,
    data: Dataset,
    expected_rate: float = 0.05,
    *,
    multiplier: float = 1.5,
    min_separation: float = SEPARATION,
    layer: Layer = "embedding",
) -> SanitizeResult:
    """Flag, in every class that looks poisoned, the `multiplier * expected_rate` share with the
    largest scores.

    Scores are squared projections on the class's top singular vector, divided by the
    class median so classes compare. As in Tran et al., `expected_rate` bounds the
    poisoned fraction *of a class* (a 5% BadNets poison aimed at one of ten classes is
    about a third of that class). Unlike Tran et al., a class is cleaned only when its
    projections split into two groups at least `min_separation` apart (Ashman's D of the best
    two-group split): poison sharing a trigger forms a group of its own along that direction,
    while a clean class's spread is unimodal or skewed. `min_separation=0` cleans every class.
    """
    if not 0.0 < expected_rate < 1.0:
        raise UsageError(
            f"expected poison rate {expected_rate!r} is outside (0, 1)",
            fix="pass an upper bound on the poisoned fraction of a class, e.g. 0.35",
        )
    labels = _labels(data)
    reps = features(model, data.x, layer)
    scores = np.zeros(len(data))
    flags = np.zeros(len(data), dtype=bool)
    with single_threaded_blas():
        separation = _spectral_scores(
            reps, labels, multiplier * expected_rate, min_separation, scores, flags
        )
    return _result(
        "spectral",
        data,
        scores,
        flags,
        expected_rate=expected_rate,
        layer=layer,
        separation=separation,
        min_separation=min_separation,
    )


def single_threaded_blas() -> Any:
    """Small SVDs and k-means run fastest on one BLAS thread, and do not stall a busy machine."""
    from threadpoolctl import threadpool_limits

    return threadpool_limits(limits=1)


def split_separation(values: np.ndarray) -> float:
    """Ashman's D of the best split of 1-D `values` into two groups (least within variance):
    sqrt(2) |m1 - m2| / sqrt(v1 + v2). About 2.7 for a normal sample, 3.5 for a uniform one."""
    order = np.sort(np.asarray(values, dtype=np.float64))
    n = len(order)
    if n < 4:
        return 0.0
    k = np.arange(1, n)
    total, squares = np.cumsum(order), np.cumsum(order**2)
    m1, m2 = total[:-1] / k, (total[-1] - total[:-1]) / (n - k)
    v1 = np.maximum(squares[:-1] / k - m1**2, 0.0)
    v2 = np.maximum((squares[-1] - squares[:-1]) / (n - k) - m2**2, 0.0)
    best = int(np.argmin(k * v1 + (n - k) * v2))
    spread = math.sqrt(v1[best] + v2[best])
    return math.inf if spread == 0 else math.sqrt(2) * abs(m1[best] - m2[best]) / spread


def _spectral_scores(
    reps: np.ndarray,
    labels: np.ndarray,
    share: float,
    min_separation: float,
    scores: np.ndarray,
    flags: np.ndarray,
) -> dict[str, float]:
    """Score every class; flag the top `share` of the classes that look poisoned."""
    separation: dict[str, float] = {}
    for c in np.unique(labels):
        rows = np.flatnonzero(labels == c)
        if len(rows) < 2:
            continue
        centred = reps[rows] - reps[rows].mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projection = centred @ vt[0]
        raw = projection**2
        scores[rows] = raw / max(float(np.median(raw)), 1e-12)
        separation[str(int(c))] = d = split_separation(projection)
        if d >= min_separation:
            n_flag = min(len(rows), math.ceil(share * len(rows)))
            flags[rows[np.argsort(-raw, kind="stable")[:n_flag]]] = True
    return separation


def activation_clustering(
    model: Model,
    data: Dataset,
    *,
    max_cluster_fraction: float = 0.35,
    n_components: int = 10,
    n_neighbors: int = 5,
    layer: Layer = "embedding",
    seed: int = 0,
) -> SanitizeResult:
    """Two-means per class on reduced representations; flag small clusters that belong elsewhere.

    A cluster holding at most `max_cluster_fraction` of its class is tested by exclusionary
    reclassification: a k-NN classifier on the inputs *outside* the cluster labels its
    members; if most of them land in another class, the cluster is poison. (Chen et al.
    retrain the model for this step; k-NN on the inputs is the cheap stand-in.)
    """
    labels = _labels(data)
    reps = features(model, data.x, layer)
    flat = data.x.reshape(len(data), -1)
    scores = np.zeros(len(data))
    flags = np.zeros(len(data), dtype=bool)
    verdicts: dict[str, float] = {}
    with single_threaded_blas():
        for c in np.unique(labels):
            rows = np.flatnonzero(labels == c)
            agreement = _cluster_class(
                reps[rows],
                flat,
                labels,
                rows,
                scores,
                max_cluster_fraction,
                n_components,
                n_neighbors,
                seed,
            )
            if agreement is None:
                continue
            verdicts[str(int(c))] = agreement[0]
            if agreement[0] < 0.5:
                flags[agreement[1]] = True
    return _result("activation", data, scores, flags, cluster_agreement=verdicts, layer=layer)


def _cluster_class(
    reps: np.ndarray,
    flat: np.ndarray,
    labels: np.ndarray,
    rows: np.ndarray,
    scores: np.ndarray,
    max_cluster_fraction: float,
    n_components: int,
    n_neighbors: int,
    seed: int,
) -> tuple[float, np.ndarray] | None:
    """Split one class; return (agreement of its small cluster with the class, its rows)."""
    from sklearn.cluster import KMeans
    from sklearn.decomposition import PCA
    from sklearn.neighbors import KNeighborsClassifier

    if len(rows) < 4:
        return None
    centred = reps - reps.mean(axis=0)
    dims = min(n_components, len(rows) - 1, centred.shape[1])
    reduced = PCA(dims, random_state=seed).fit_transform(centred)
    km = KMeans(2, n_init=10, random_state=seed).fit(reduced)
    small = int(np.argmin(np.bincount(km.labels_, minlength=2)))
    members = km.labels_ == small
    if members.mean() > max_cluster_fraction or not members.any():
        return None
    dist = np.linalg.norm(reduced[:, None, :] - km.cluster_centers_[None], axis=2)
    outside = np.ones(len(flat), dtype=bool)
    outside[rows[members]] = False
    knn = KNeighborsClassifier(n_neighbors=min(n_neighbors, int(outside.sum())))
    knn.fit(flat[outside], labels[outside])
    agreement = float((knn.predict(flat[rows[members]]) == labels[rows[0]]).mean())
    scale = float(np.median(dist[:, 1 - small])) or 1.0
    scores[rows] = (1.0 - agreement) * (dist[:, 1 - small] - dist[:, small]).clip(min=0) / scale
    return agreement, rows[members]


def knn_label_consistency(
    data: Dataset, *, k: int = 10, threshold: float = 0.5, model: Model | None = None
) -> SanitizeResult:
    """Flag rows where more than `threshold` of the `k` nearest neighbours carry another label.

    Neighbours are found on standardised inputs, or on the model's penultimate
    representation when a torch `model` is given.
    """
    from sklearn.neighbors import NearestNeighbors

    labels = _labels(data)
    if not 1 <= k < len(data):
        raise UsageError(f"k={k} neighbours for {len(data)} rows", fix="choose 1 <= k < rows")
    if model is not None:
        space = features(model, data.x)
    else:
        flat = data.x.reshape(len(data), -1).astype(np.float64)
        space = (flat - flat.mean(axis=0)) / (flat.std(axis=0) + 1e-8)
    _, neighbours = NearestNeighbors(n_neighbors=k + 1).fit(space).kneighbors(space)
    others = labels[neighbours[:, 1:]]
    scores = (others != labels[:, None]).mean(axis=1)
    return _result("knn", data, scores, scores > threshold, k=k)


def sanitize(
    method: str, data: Dataset, model: Model | None, *, expected_rate: float = 0.05, seed: int = 0
) -> SanitizeResult:
    """Run one sanitiser by name (`spectral`, `activation` or `knn`)."""
    if method not in METHODS:
        raise UsageError(
            f"unknown sanitiser {method!r}", fix=f"choose one of: {', '.join(METHODS)}"
        )
    if method == "knn":
        return knn_label_consistency(data)
    if model is None:
        raise UsageError(
            f"the {method} sanitiser reads a model's activations",
            fix="pass --model (a torch model)",
        )
    if method == "spectral":
        return spectral_signatures(model, data, expected_rate)
    return activation_clustering(model, data, seed=seed)
