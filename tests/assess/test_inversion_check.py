"""The inversion check: attribute inference on tables, MI-Face on white-box image models."""

from __future__ import annotations

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.inversion import CHECK
from bastion.core.finding import Severity
from bastion.core.model import Model
from bastion.zoo import build, entry


def test_inversion_check_tabular() -> None:
    train, test = entry("cancer-logreg").load_data()
    model = build("cancer-logreg")
    data = AssessmentData(test=test, train=train)
    assert CHECK.applies_to(model, data)
    (finding,) = CHECK.run(model, data, Budget.QUICK, 0, lambda _: None)
    assert finding.id == "inversion.attribute_inference"
    assert len(finding.evidence["features"]) == 3
    assert finding.value > 0.3 and finding.severity >= Severity.MEDIUM
    assert (
        "rounded scores" in finding.recommendation and "bastion harden dp" in finding.recommendation
    )


def test_inversion_check_images() -> None:
    train, test = entry("digits-cnn").load_data()
    model = build("digits-cnn")
    (finding,) = CHECK.run(
        model, AssessmentData(test=test, train=train), Budget.QUICK, 0, lambda _: None
    )
    assert finding.id == "inversion.class_reconstruction"
    assert finding.evidence["chance"] == 0.1
    assert 0.0 <= finding.value <= 1.0
    assert finding.plots[0].svg.startswith("<svg")


def test_inversion_check_on_label_only_table() -> None:
    import numpy as np

    class LabelOnly:
        def __init__(self, inner: Model) -> None:
            self.inner = inner
            self.n_classes = inner.n_classes
            self.input_shape = inner.input_shape
            self.input_bounds = inner.input_bounds

        def predict_proba(self, x: np.ndarray) -> np.ndarray:
            return np.eye(self.n_classes)[self.inner.predict_proba(x).argmax(axis=1)]

    train, test = entry("cancer-logreg").load_data()
    model = LabelOnly(build("cancer-logreg"))
    (finding,) = CHECK.run(
        model, AssessmentData(test=test, train=train), Budget.QUICK, 0, lambda _: None
    )
    assert finding.severity == Severity.INFO and finding.evidence["label_only"]
