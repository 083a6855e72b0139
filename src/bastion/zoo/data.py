"""The zoo's data sets, loaded from files that ship inside scikit-learn."""

from __future__ import annotations

import numpy as np
from sklearn.datasets import load_breast_cancer, load_digits
from sklearn.model_selection import train_test_split

from bastion.core.dataset import Dataset

SPLIT_SEED = 0
TEST_FRACTION = 0.2


def _split(x: np.ndarray, y: np.ndarray, **meta: object) -> tuple[Dataset, Dataset]:
    x_tr, x_te, y_tr, y_te = train_test_split(
        x, y, test_size=TEST_FRACTION, random_state=SPLIT_SEED, stratify=y
    )
    return Dataset(x_tr, y_tr, **meta), Dataset(x_te, y_te, **meta)  # type: ignore[arg-type]


def digits() -> tuple[Dataset, Dataset]:
    """8x8 handwritten digits as (N, 1, 8, 8) images with pixels in [0, 1]."""
    raw = load_digits()
    x = (raw.data / 16.0).astype(np.float32).reshape(-1, 1, 8, 8)
    bounds = (np.zeros((1, 8, 8), np.float32), np.ones((1, 8, 8), np.float32))
    return _split(
        x,
        raw.target.astype(np.int64),
        feature_names=tuple(f"pixel_{r}_{c}" for r in range(8) for c in range(8)),
        class_names=tuple(str(d) for d in range(10)),
        bounds=bounds,
    )


def cancer() -> tuple[Dataset, Dataset]:
    """Wisconsin breast-cancer measurements (30 features), bounded by each observed range."""
    raw = load_breast_cancer()
    x = raw.data.astype(np.float32)
    bounds = (x.min(axis=0), x.max(axis=0))
    return _split(
        x,
        raw.target.astype(np.int64),
        feature_names=tuple(str(n) for n in raw.feature_names),
        class_names=tuple(str(n) for n in raw.target_names),
        bounds=bounds,
    )
