"""The `extraction-defence` assess check: the offline attack-sim on a zoo model."""

from __future__ import annotations

import math

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.extraction_defence import CHECK, strategy_finding
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
        assert f.evidence["queries_sent"] == 300  # evaluation never reaches the watched API
    assert findings["extraction-defence.benign"].value == 0.0
    assert any(c.name == "extraction-defence" for c in all_checks())


def test_never_flagged_is_infinite_not_budget_plus_one() -> None:
    finding = strategy_finding("random", None, 300, 300, {}, 0.9)
    assert finding.value == math.inf and finding.severity == Severity.HIGH
    assert finding.title == "random extraction never flagged within 300 queries"
    assert finding.evidence["flagged"] == "never flagged within 300 queries"
    flagged = strategy_finding("random", 40, 300, 300, {"ood": 40}, 0.5)
    assert flagged.value == 40.0 and flagged.title == "random extraction flagged after 40 queries"
