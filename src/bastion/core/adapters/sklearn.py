"""scikit-learn classifiers as Models."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from bastion.core.errors import InputError


class SklearnModel:
    """Any fitted scikit-learn classifier with `predict_proba`."""

    def __init__(
        self,
        estimator: Any,
        *,
        n_features: int | None = None,
        input_bounds: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        if not callable(getattr(estimator, "predict_proba", None)):
            raise InputError(
                f"{type(estimator).__name__} has no predict_proba",
                fix="use a probabilistic classifier (or wrap it with CalibratedClassifierCV)",
            )
        classes = getattr(estimator, "classes_", None)
        if classes is None:
            raise InputError("the estimator is not fitted", fix="fit it before wrapping it")
        features = (
            n_features if n_features is not None else getattr(estimator, "n_features_in_", None)
        )
        if features is None:
            raise InputError(
                "cannot tell the estimator's number of features", fix="pass n_features"
            )
        self.estimator = estimator
        self.n_classes = len(classes)
        self.input_shape: tuple[int, ...] = (int(features),)
        self.input_bounds = input_bounds
        self.class_names = (
            list(class_names) if class_names is not None else [str(c) for c in classes]
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.asarray(self.estimator.predict_proba(np.asarray(x, dtype=np.float64)))
