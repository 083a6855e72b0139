"""The model contracts: what an API caller sees, and the white-box view for torch."""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from bastion.core.errors import DataError, ModelOutputError

if TYPE_CHECKING:
    import torch

PROBABILITY_TOLERANCE = 1e-3


@runtime_checkable
class Model(Protocol):
    """The black-box view of a classifier: probabilities for a batch of inputs."""

    n_classes: int
    input_shape: tuple[int, ...]
    input_bounds: tuple[float, float] | None

    def predict_proba(self, x: np.ndarray) -> np.ndarray: ...


@runtime_checkable
class DifferentiableModel(Model, Protocol):
    """The white-box view: a torch module whose logits can be differentiated."""

    module: torch.nn.Module

    def logits(self, x: torch.Tensor) -> torch.Tensor: ...


def is_differentiable(model: Model) -> bool:
    """True when the model exposes torch logits (white-box attacks apply)."""
    return hasattr(model, "module") and callable(getattr(model, "logits", None))


def check_inputs(model: Model, x: np.ndarray) -> np.ndarray:
    """Validate a batch against the model's declared shape; return it as float32."""
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiub":
        raise DataError(
            f"inputs have dtype {arr.dtype}, expected numbers",
            fix="convert the data to a numeric array",
        )
    if arr.ndim != len(model.input_shape) + 1 or tuple(arr.shape[1:]) != model.input_shape:
        raise DataError(
            f"inputs have shape {tuple(arr.shape)}, the model expects (N, "
            f"{', '.join(str(d) for d in model.input_shape)})",
            fix="reshape the data to the model's input shape",
        )
    if not np.isfinite(arr).all():
        raise DataError("inputs contain NaN or infinite values", fix="remove or impute them")
    return arr.astype(np.float32, copy=False)


def check_probabilities(probs: np.ndarray, n_rows: int, n_classes: int) -> np.ndarray:
    """Raise ModelOutputError unless `probs` is an (n_rows, n_classes) probability matrix."""
    arr = np.asarray(probs, dtype=np.float64)
    if arr.shape != (n_rows, n_classes):
        raise ModelOutputError(
            f"model returned shape {arr.shape}, expected ({n_rows}, {n_classes})",
            fix="return one probability per class for every input row",
        )
    if not np.isfinite(arr).all():
        raise ModelOutputError(
            "model returned NaN or infinite probabilities", fix="check the model"
        )
    if (arr < -PROBABILITY_TOLERANCE).any():
        raise ModelOutputError(
            "model returned negative probabilities",
            fix="apply softmax to logits before returning them",
        )
    sums = arr.sum(axis=1)
    if np.abs(sums - 1.0).max(initial=0.0) > PROBABILITY_TOLERANCE:
        raise ModelOutputError(
            f"model probabilities sum to {sums.min():.4f}..{sums.max():.4f}, not 1",
            fix="apply softmax to logits before returning them",
        )
    return arr


class CheckedModel:
    """Wraps any Model so every call validates its inputs and outputs."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        arr = check_inputs(self, x)
        return check_probabilities(self.inner.predict_proba(arr), len(arr), self.n_classes)

    def __getattr__(self, name: str) -> object:
        # Expose the wrapped model's extras (module, logits, class_names, ...).
        return getattr(self.inner, name)


def predict_labels(model: Model, x: np.ndarray, batch_size: int = 512) -> np.ndarray:
    """Top-1 labels, computed in batches."""
    out = [
        model.predict_proba(x[i : i + batch_size]).argmax(axis=1)
        for i in range(0, len(x), batch_size)
    ]
    return np.concatenate(out) if out else np.zeros(0, dtype=np.int64)
