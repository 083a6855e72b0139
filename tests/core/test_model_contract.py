"""The Model contract's validation: inputs and outputs are checked on every call."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.errors import DataError, ModelOutputError
from bastion.core.model import CheckedModel, check_inputs, check_probabilities, predict_labels


class FixedOutput:
    """A model returning whatever it is told to, for testing the output checks."""

    n_classes = 3
    input_shape = (4,)
    input_bounds = None

    def __init__(self, output: np.ndarray) -> None:
        self.output = output

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.output[: len(x)]


def test_valid_probabilities_pass_through() -> None:
    probs = np.array([[0.2, 0.3, 0.5], [1.0, 0.0, 0.0]])
    model = CheckedModel(FixedOutput(probs))
    np.testing.assert_allclose(model.predict_proba(np.zeros((2, 4))), probs)


@pytest.mark.parametrize(
    ("output", "message"),
    [
        (np.array([[0.5, 0.5], [0.5, 0.5]]), "shape"),
        (np.array([[1.2, -0.2, 0.0], [0.3, 0.3, 0.4]]), "negative"),
        (np.array([[2.0, 1.0, 0.5], [0.3, 0.3, 0.4]]), "sum to"),
        (np.array([[np.nan, 0.5, 0.5], [0.3, 0.3, 0.4]]), "NaN"),
    ],
)
def test_invalid_probabilities_are_refused(output: np.ndarray, message: str) -> None:
    model = CheckedModel(FixedOutput(output))
    with pytest.raises(ModelOutputError, match=message):
        model.predict_proba(np.zeros((2, 4)))


def test_probability_tolerance_accepts_float_rounding() -> None:
    probs = np.array([[0.3333333, 0.3333333, 0.3333333]])
    check_probabilities(probs, 1, 3)


@pytest.mark.parametrize(
    ("x", "message"),
    [
        (np.zeros((2, 5)), "shape"),
        (np.zeros(4), "shape"),
        (np.array([["a", "b", "c", "d"]]), "dtype"),
        (np.array([[0.0, np.inf, 0.0, 0.0]]), "NaN or infinite"),
    ],
)
def test_bad_inputs_are_refused(x: np.ndarray, message: str) -> None:
    with pytest.raises(DataError, match=message):
        check_inputs(FixedOutput(np.zeros((1, 3))), x)


class FirstFeatureClass(FixedOutput):
    """Predicts class `x[:, 0] % 3`, so batching mistakes change the labels."""

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.eye(3)[x[:, 0].astype(int) % 3]


def test_predict_labels_batches_consistently() -> None:
    x = np.zeros((1000, 4))
    x[:, 0] = np.arange(1000)
    labels = predict_labels(FirstFeatureClass(np.zeros(0)), x, batch_size=7)
    np.testing.assert_array_equal(labels, np.arange(1000) % 3)
