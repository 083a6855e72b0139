"""Training functions for the zoo; attacks reuse them to train shadow and reference models."""

from __future__ import annotations

from typing import Any

import numpy as np

from bastion.core.adapters.sklearn import SklearnModel
from bastion.core.dataset import Dataset

DIGITS_CNN_LAYERS: list[dict[str, Any]] = [
    {"type": "conv2d", "in": 1, "out": 16, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "conv2d", "in": 16, "out": 32, "kernel": 3, "padding": 1},
    {"type": "relu"},
    {"type": "maxpool2d", "kernel": 2},
    {"type": "flatten"},
    {"type": "linear", "in": 512, "out": 64},
    {"type": "relu"},
    {"type": "linear", "in": 64, "out": 10},
]

DIGITS_MLP_LAYERS: list[dict[str, Any]] = [
    {"type": "flatten"},
    {"type": "linear", "in": 64, "out": 128},
    {"type": "relu"},
    {"type": "linear", "in": 128, "out": 10},
]


def train_torch_classifier(
    layers: list[dict[str, Any]],
    data: Dataset,
    *,
    seed: int,
    epochs: int,
    lr: float = 1e-3,
    batch_size: int = 64,
    weight_decay: float = 0.0,
) -> Any:
    """Train a sequential torch classifier with Adam; deterministic for a given seed."""
    import torch

    from bastion.core.adapters.torch import TorchModel
    from bastion.core.adapters.torch_file import build_sequential
    from bastion.core.adapters.torch_fit import fit_cross_entropy

    torch.manual_seed(seed)
    module = build_sequential(layers)
    x = torch.as_tensor(data.x, dtype=torch.float32)
    y = torch.as_tensor(data.labels)
    fit_cross_entropy(
        module,
        x,
        y,
        epochs=epochs,
        lr=lr,
        batch_size=batch_size,
        seed=seed,
        weight_decay=weight_decay,
    )
    n_classes = layers[-1]["out"]
    bounds = None
    if data.bounds is not None:
        bounds = (float(np.min(data.bounds[0])), float(np.max(data.bounds[1])))
    return TorchModel(
        module,
        input_shape=tuple(data.x.shape[1:]),
        n_classes=n_classes,
        input_bounds=bounds,
        class_names=data.class_names or None,
    )


def train_digits_cnn(data: Dataset, seed: int = 0) -> Any:
    """The zoo's digits CNN."""
    return train_torch_classifier(DIGITS_CNN_LAYERS, data, seed=seed, epochs=30)


def train_digits_mlp(data: Dataset, seed: int = 0) -> Any:
    """The zoo's digits MLP (no regularisation: a useful membership-inference target)."""
    return train_torch_classifier(DIGITS_MLP_LAYERS, data, seed=seed, epochs=60)


DIGITS_MLP_OVERFIT_LAYERS: list[dict[str, Any]] = [
    {"type": "flatten"},
    {"type": "linear", "in": 64, "out": 256},
    {"type": "relu"},
    {"type": "linear", "in": 256, "out": 10},
]


def train_digits_mlp_overfit(data: Dataset, seed: int = 0) -> Any:
    """A deliberately overfit digits MLP: wide, trained long, unregularised (a privacy target)."""
    return train_torch_classifier(DIGITS_MLP_OVERFIT_LAYERS, data, seed=seed, epochs=300)


def train_cancer_logreg(data: Dataset, seed: int = 0) -> SklearnModel:
    """Standardised logistic regression on the breast-cancer data."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    est = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, random_state=seed))
    est.fit(data.x, data.labels)
    return SklearnModel(est, class_names=data.class_names or None)


def train_cancer_gbt(data: Dataset, seed: int = 0) -> SklearnModel:
    """Gradient-boosted trees on the breast-cancer data."""
    from sklearn.ensemble import GradientBoostingClassifier

    est = GradientBoostingClassifier(random_state=seed)
    est.fit(data.x, data.labels)
    return SklearnModel(est, class_names=data.class_names or None)
