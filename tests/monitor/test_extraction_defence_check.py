"""The `extraction-defence` assess check: the offline attack-sim on a zoo model."""

from __future__ import annotations

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.extraction_defence import CHECK
from bastion.assess.registry import all_checks
from bastion.core.finding import Severity
from bastion.zoo import build, entry


def test_check_flags_every_strategy_and_no_benign_client() -> None:
    model = build("cancer-logreg")
    train, test = entry("cancer-logreg").load_data()
    data = AssessmentData(test, train)
    assert CHECK.applies_to(model, data)
    assert not CHECK.applies_to(model, AssessmentData(test))
    findings = {f.id: f for f in CHECK.run(model, data, Budget.QUICK, 0, lambda _: None)}
    for strategy in ("random", "natural", "jacobian", "knockoff"):
        f = findings[f"extraction-defence.{strategy}"]
        assert f.severity == Severity.INFO and f.value <= 300, (strategy, f.title)
    assert findings["extraction-defence.benign"].value == 0.0
    assert any(c.name == "extraction-defence" for c in all_checks())
