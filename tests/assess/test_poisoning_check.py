"""The `poisoning` check on a built-in model: findings, numbers and plots."""

from __future__ import annotations

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.poisoning import CHECK
from bastion.assess.registry import select
from bastion.core.finding import Severity
from bastion.zoo import build, entry


def test_registered() -> None:
    assert select(["poisoning"])[0] is CHECK


def test_applies_only_with_training_data_and_trainer() -> None:
    e = entry("digits-cnn")
    train, test = e.load_data()
    model = build("digits-cnn")
    assert CHECK.applies_to(model, AssessmentData(test, train, e.train))
    assert not CHECK.applies_to(model, AssessmentData(test))
    assert not CHECK.applies_to(model, AssessmentData(test, train, None))


def test_quick_run_on_digits_reports_a_working_backdoor() -> None:
    e = entry("digits-cnn")
    train, test = e.load_data()
    seen: list[float] = []
    findings = CHECK.run(
        build("digits-cnn"), AssessmentData(test, train, e.train), Budget.QUICK, 0, seen.append
    )
    by_id = {f.id: f for f in findings}
    backdoor = by_id["poisoning.backdoor"]
    assert backdoor.headline and backdoor.value >= 0.8
    assert backdoor.severity >= Severity.MEDIUM
    assert set(backdoor.evidence["per_rate"]) == {"1%", "5%", "10%"}
    sanitisation = by_id["poisoning.sanitisation"]
    assert set(sanitisation.evidence["methods"]) == {"spectral", "activation", "knn"}
    assert all(f.plots and f.plots[0].svg.startswith("<svg") for f in findings)
    assert seen[-1] == 1.0 and seen == sorted(seen)
