"""The extraction check: exact equation solving is critical, cloning is plotted per strategy."""

from __future__ import annotations

import numpy as np

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.extraction import CHECK
from bastion.assess.registry import select
from bastion.core.finding import Severity
from bastion.core.model import Model
from bastion.zoo import build, entry


def test_extraction_check_on_logistic_regression() -> None:
    train, test = entry("cancer-logreg").load_data()
    data = AssessmentData(test=test, train=train)
    model = build("cancer-logreg")
    assert CHECK.applies_to(model, data)
    seen: list[float] = []
    findings = CHECK.run(model, data, Budget.QUICK, 0, seen.append)
    by_id = {f.id: f for f in findings}
    exact = by_id["extraction.equation_solving"]
    assert exact.severity == Severity.CRITICAL and exact.value == 1.0
    assert exact.evidence["queries"] == 31
    learned = by_id["extraction.learning"]
    assert set(learned.evidence["strategies"]) == {"random", "natural", "jacobian", "knockoff"}
    assert learned.value == max(s["fidelity"] for s in learned.evidence["strategies"].values())
    assert learned.evidence["label_only"]["queries"] <= 300
    assert "bastion serve" in learned.recommendation and "rate-limit" in learned.recommendation
    assert learned.plots and learned.plots[0].svg.startswith("<svg")
    assert seen[-1] == 1.0


def test_extraction_check_is_registered() -> None:
    assert [c.name for c in select(["extraction", "membership", "inversion"])] == [
        "extraction",
        "membership",
        "inversion",
    ]


class LabelOnly:
    """The bypass an owner may try: serve labels only. The check must still run and say so."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes)[self.inner.predict_proba(x).argmax(axis=1)]


def test_extraction_check_on_label_only_api() -> None:
    train, test = entry("cancer-logreg").load_data()
    model = LabelOnly(build("cancer-logreg"))
    findings = CHECK.run(
        model, AssessmentData(test=test, train=train), Budget.QUICK, 0, lambda _: None
    )
    by_id = {f.id: f for f in findings}
    assert by_id["extraction.equation_solving"].severity == Severity.INFO
    assert "only labels" in by_id["extraction.equation_solving"].evidence["reason"]
    # Labels alone still leak the model: the learning-based clone keeps working.
    assert by_id["extraction.learning"].value >= 0.8
