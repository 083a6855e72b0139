"""The membership check: shadow attacks when a trainer is known, threshold-only otherwise."""

from __future__ import annotations

import numpy as np

from bastion.assess.check import AssessmentData, Budget
from bastion.assess.checks.membership import CHECK, primary_lira
from bastion.core.adapters.sklearn import SklearnModel
from bastion.core.dataset import Dataset
from bastion.core.finding import Severity
from bastion.core.model import Model


def train_forest(data: Dataset, seed: int) -> SklearnModel:
    from sklearn.ensemble import RandomForestClassifier

    est = RandomForestClassifier(n_estimators=15, random_state=seed).fit(data.x, data.labels)
    return SklearnModel(est, n_features=data.x.shape[1])


class LabelOnly:
    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes)[self.inner.predict_proba(x).argmax(axis=1)]


def _data() -> tuple[Dataset, Dataset]:
    rng = np.random.default_rng(1)
    x = rng.normal(size=(200, 5)).astype(np.float32)
    y = rng.integers(0, 2, 200)  # random labels: only memorisation fits them
    return Dataset(x[:100], y[:100]), Dataset(x[100:], y[100:])


def test_membership_check_with_shadow_models() -> None:
    train, test = _data()
    model = train_forest(train, 0)
    data = AssessmentData(test=test, train=train, trainer=train_forest)
    assert CHECK.applies_to(model, data)
    (finding,) = CHECK.run(model, data, Budget.QUICK, 0, lambda _: None)
    attacks = finding.evidence["attacks"]
    assert {"loss", "lira-online-fixed", "lira-offline-fixed", "rmia", "shokri"} <= set(attacks)
    # severity from the pre-registered attack (offline LiRA with 4 shadows), not the best of six
    assert finding.evidence["primary_attack"] == "lira-offline-fixed"
    assert finding.value == attacks["lira-offline-fixed"]["tpr_at_1%_fpr"]
    assert finding.title.startswith("lira-offline-fixed:")
    assert finding.severity >= Severity.MEDIUM
    assert "bastion harden dp" in finding.recommendation
    assert finding.plots[0].svg.startswith("<svg") and "log" in finding.plots[0].title


def test_primary_attack_is_fixed_by_the_shadow_count() -> None:
    assert primary_lira(4) == "lira-offline-fixed"
    assert primary_lira(16) == "lira-online-fixed"


def test_membership_check_without_trainer_or_scores() -> None:
    train, test = _data()
    model = train_forest(train, 0)
    (finding,) = CHECK.run(
        model, AssessmentData(test=test, train=train), Budget.QUICK, 0, lambda _: None
    )
    assert set(finding.evidence["attacks"]) == {"loss"} and "skipped" in finding.evidence["note"]
    assert finding.evidence["primary_attack"] == "loss"
    data = AssessmentData(test=test, train=train, trainer=train_forest)
    (finding,) = CHECK.run(LabelOnly(model), data, Budget.QUICK, 0, lambda _: None)
    assert set(finding.evidence["attacks"]) == {"gap"} and "only labels" in finding.evidence["note"]


def test_membership_check_needs_training_data() -> None:
    train, test = _data()
    assert not CHECK.applies_to(train_forest(train, 0), AssessmentData(test=test))
