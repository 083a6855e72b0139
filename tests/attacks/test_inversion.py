"""Inversion: MI-Face reconstructions are recognisable; attribute inference beats the marginal."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.inversion import attribute_inference, mi_face
from bastion.attacks.oracle import LabelOnlyError
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model
from bastion.zoo import build, entry


class BlackBox:
    """Hides the torch module: only predict_proba is left."""

    def __init__(self, inner: Model, label_only: bool = False) -> None:
        self.inner = inner
        self.label_only = label_only
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        p = self.inner.predict_proba(x)
        return np.eye(self.n_classes)[p.argmax(axis=1)] if self.label_only else p


def test_mi_face_reconstructs_recognisable_classes() -> None:
    model = build("digits-cnn")
    train, test = entry("digits-cnn").load_data()
    result = mi_face(model, steps=40, start=test.x.mean(axis=0), reference=train, seed=0)  # type: ignore[arg-type]
    assert result.reconstructions.shape == (10, 1, 8, 8)
    assert result.reconstructions.min() >= 0.0 and result.reconstructions.max() <= 1.0
    assert result.confidence.mean() > 0.9
    assert result.identification is not None and result.identification >= 0.5
    again = mi_face(model, steps=40, start=test.x.mean(axis=0), reference=train, seed=0)  # type: ignore[arg-type]
    np.testing.assert_array_equal(result.reconstructions, again.reconstructions)


def test_mi_face_needs_a_white_box_image_model() -> None:
    with pytest.raises(UsageError, match="black box"):
        mi_face(BlackBox(build("digits-cnn")), steps=5)  # type: ignore[arg-type]
    with pytest.raises(UsageError, match="positive"):
        mi_face(build("digits-cnn"), steps=0)  # type: ignore[arg-type]


def test_attribute_inference_beats_marginal_on_exact_scores() -> None:
    model = build("cancer-logreg")
    train, test = entry("cancer-logreg").load_data()
    result = attribute_inference(model, train.subset(slice(0, 80)), 0, population=test)
    assert result.feature_name == "mean radius"
    assert result.advantage > 0.3
    assert result.accuracy == pytest.approx(result.baseline_accuracy + result.advantage)
    assert result.queries == 80 * (1 + 20)


def test_attribute_inference_bad_input() -> None:
    model = build("cancer-logreg")
    train, test = entry("cancer-logreg").load_data()
    with pytest.raises(LabelOnlyError):
        attribute_inference(
            BlackBox(model, label_only=True), train.subset(slice(0, 10)), 0, population=test
        )
    with pytest.raises(DataError, match="outside"):
        attribute_inference(model, train.subset(slice(0, 10)), 30, population=test)
    with pytest.raises(DataError, match="records"):
        attribute_inference(model, type(train)(train.x[:10, :29], train.y[:10]), 0, population=test)
    with pytest.raises(DataError, match="tabular"):
        digits_train, digits_test = entry("digits-cnn").load_data()
        attribute_inference(build("digits-cnn"), digits_train, 0, population=digits_test)
