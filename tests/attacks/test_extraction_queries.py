"""Extraction sends the victim exactly its query budget: evaluating the clone never goes
through the attacker's channel (a monitored API would otherwise see evaluation rows as attack
traffic and the budget would be overrun)."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.clone import CloneSettings
from bastion.attacks.extraction import STRATEGIES, equation_solving, extract
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, predict_labels
from bastion.zoo import build, entry

FAST = CloneSettings(epochs=3, max_steps=20)


class Counting:
    """The victim, counting every row it answers."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds
        self.rows = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.rows += len(x)
        return self.inner.predict_proba(x)


@pytest.fixture(scope="module")
def cancer() -> tuple[Model, Dataset, Dataset]:
    _, test = entry("cancer-logreg").load_data()
    return build("cancer-logreg"), test.subset(slice(0, 57)), test.subset(slice(57, None))


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_victim_sees_exactly_the_budget(
    strategy: str, cancer: tuple[Model, Dataset, Dataset]
) -> None:
    model, attacker, evaluation = cancer
    victim = Counting(model)
    labels = predict_labels(model, evaluation.x)
    result = extract(
        victim,
        attacker.x,
        evaluation,
        strategy=strategy,
        budget=150,
        seed=0,
        rounds=3,
        settings=FAST,
        evaluation_labels=labels,
    )
    assert victim.rows == result.queries == 150
    assert len(result.curve) >= 2  # the fidelity curve is still measured every round
    assert result.fidelity == result.curve[-1][1]
    assert result.victim_accuracy == pytest.approx(float((labels == evaluation.labels).mean()))


def test_without_evaluation_there_is_no_fidelity_and_no_extra_query(
    cancer: tuple[Model, Dataset, Dataset],
) -> None:
    model, attacker, _ = cancer
    victim = Counting(model)
    result = extract(
        victim, attacker.x, None, strategy="jacobian", budget=100, seed=0, settings=FAST
    )
    assert victim.rows == result.queries == 100
    assert result.fidelity is None and result.curve == ()


def test_evaluation_labels_default_to_one_read_before_the_attack(
    cancer: tuple[Model, Dataset, Dataset],
) -> None:
    model, attacker, evaluation = cancer
    victim = Counting(model)
    result = extract(
        victim,
        attacker.x,
        evaluation,
        strategy="random",
        budget=100,
        seed=0,
        rounds=4,
        settings=FAST,
    )
    assert len(result.curve) == 4
    assert victim.rows == 100 + len(evaluation)  # once, not once per round


def test_equation_solving_queries_only_its_equations(
    cancer: tuple[Model, Dataset, Dataset],
) -> None:
    model, attacker, evaluation = cancer
    victim = Counting(model)
    labels = predict_labels(model, evaluation.x)
    result = equation_solving(victim, attacker.x, evaluation, seed=0, evaluation_labels=labels)
    assert victim.rows == result.queries == model.input_shape[0] + 1
    assert result.fidelity == 1.0


def test_bad_evaluation_labels_are_refused(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    with pytest.raises(DataError, match="evaluation_labels"):
        extract(
            model,
            attacker.x,
            evaluation,
            strategy="random",
            budget=10,
            seed=0,
            evaluation_labels=np.zeros(3, int),
        )
    with pytest.raises(UsageError, match="without an evaluation set"):
        extract(
            model,
            attacker.x,
            None,
            strategy="random",
            budget=10,
            seed=0,
            evaluation_labels=np.zeros(3, int),
        )
