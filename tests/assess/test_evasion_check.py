"""The `evasion` check: findings, plots and severity for image and tabular models."""

from __future__ import annotations

import pytest

from bastion.assess.check import Budget
from bastion.assess.checks.evasion import CHECK, EPSILON_ENV, threat_epsilon
from bastion.assess.registry import select
from bastion.assess.target import resolve
from bastion.core.errors import ConfigError
from bastion.core.finding import Severity


@pytest.fixture(scope="module")
def digits():
    return resolve("builtin:digits-cnn")


def test_registered() -> None:
    assert select(["evasion"])[0] is CHECK


def test_digits_findings_and_plots(digits, monkeypatch) -> None:
    monkeypatch.delenv(EPSILON_ENV, raising=False)
    model, data = digits
    seen: list[float] = []
    findings = CHECK.run(model, data, Budget.QUICK, 0, seen.append)
    head = next(f for f in findings if f.id == "evasion.robust_accuracy")
    assert head.headline and 0.0 <= head.value < head.evidence["clean_accuracy"]
    assert head.evidence["threat_epsilon"] == pytest.approx(0.1)
    assert head.severity >= Severity.MEDIUM  # the undefended CNN loses about half its accuracy
    titles = [p.title for p in head.plots]
    assert titles == [
        "Robustness curve",
        "Original vs adversarial inputs, with predicted labels",
        "Perturbation-norm histogram",
    ]
    assert all(p.svg.startswith("<svg") for p in head.plots)
    rob = head.evidence["robust_accuracy"]
    assert rob == sorted(rob, reverse=True)
    assert seen and seen[-1] == 1.0 and seen == sorted(seen)
    assert any(f.id == "evasion.min_perturbation" for f in findings)


def test_epsilon_override(digits, monkeypatch) -> None:
    model, data = digits
    monkeypatch.setenv(EPSILON_ENV, "0.05")
    assert threat_epsilon(model, data.test) == 0.05
    monkeypatch.setenv(EPSILON_ENV, "3")
    with pytest.raises(ConfigError, match="outside"):
        threat_epsilon(model, data.test)
    monkeypatch.setenv(EPSILON_ENV, "big")
    with pytest.raises(ConfigError, match="evasion_epsilon"):
        threat_epsilon(model, data.test)


@pytest.mark.parametrize("spec", ["builtin:cancer-logreg", "builtin:cancer-gbt"])
def test_tabular_cheapest_edits(spec) -> None:
    model, data = resolve(spec)
    findings = CHECK.run(model, data, Budget.QUICK, 0, lambda f: None)
    assert [f.id for f in findings] == ["evasion.cheapest_edit"]
    f = findings[0]
    rows = f.evidence["cheapest_edits"]
    assert rows and all(r["edits"] for r in rows)
    costs = [r["cost"] for r in rows]
    assert costs == sorted(costs)
    assert f.plots[0].title == "Cheapest successful edits"
    assert 0.0 <= f.value <= 1.0
