"""Extraction: equation solving is exact on logreg, cloning follows the victim, bad input fails."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.extraction import STRATEGIES, equation_solving, extract
from bastion.attacks.extraction_pools import feature_bounds, natural_pool
from bastion.attacks.oracle import LabelOnlyError, Oracle
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model
from bastion.zoo import build, entry


class LabelOnly:
    """A victim API that returns only the top-1 class (one-hot)."""

    def __init__(self, inner: Model) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes)[self.inner.predict_proba(x).argmax(axis=1)]


@pytest.fixture(scope="module")
def cancer() -> tuple[Model, Dataset, Dataset]:
    _, test = entry("cancer-logreg").load_data()
    return build("cancer-logreg"), test.subset(slice(0, 57)), test.subset(slice(57, None))


def test_equation_solving_recovers_logreg_exactly(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    d = model.input_shape[0]
    result = equation_solving(model, attacker.x, evaluation, seed=0)
    assert result.queries == d + 1
    assert result.fidelity == 1.0
    _, test = entry("cancer-logreg").load_data()
    np.testing.assert_allclose(
        result.clone.predict_proba(test.x), model.predict_proba(test.x), atol=1e-6
    )


def test_equation_solving_refuses_label_only(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    with pytest.raises(LabelOnlyError, match="only labels"):
        equation_solving(LabelOnly(model), attacker.x, evaluation, seed=0)


def test_equation_solving_on_nonlinear_model_reports_low_fidelity() -> None:
    _, test = entry("cancer-gbt").load_data()
    result = equation_solving(
        build("cancer-gbt"), test.x[:57], test.subset(slice(57, None)), seed=0
    )
    assert result.fidelity < 1.0


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_each_strategy_clones_tabular_model(
    strategy: str, cancer: tuple[Model, Dataset, Dataset]
) -> None:
    model, attacker, evaluation = cancer
    result = extract(model, attacker.x, evaluation, strategy=strategy, budget=200, seed=1, rounds=2)
    assert result.queries <= 200
    assert not result.label_only
    assert result.fidelity >= (0.6 if strategy == "random" else 0.8), result
    assert [q for q, _ in result.curve] == sorted(q for q, _ in result.curve)
    assert result.curve[-1][0] == result.queries


def test_extraction_is_reproducible(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    a = extract(model, attacker.x, evaluation, strategy="knockoff", budget=120, seed=3, rounds=2)
    b = extract(model, attacker.x, evaluation, strategy="knockoff", budget=120, seed=3, rounds=2)
    assert a.curve == b.curve
    np.testing.assert_array_equal(
        a.clone.predict_proba(evaluation.x), b.clone.predict_proba(evaluation.x)
    )


def test_label_only_api_is_detected_and_cloned(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    result = extract(
        LabelOnly(model), attacker.x, evaluation, strategy="natural", budget=200, seed=0
    )
    assert result.label_only
    assert result.fidelity >= 0.8


def test_image_model_clone_beats_chance() -> None:
    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    result = extract(
        model,
        test.x[:100],
        test.subset(slice(100, 260)),
        strategy="jacobian",
        budget=200,
        seed=0,
        rounds=2,
    )
    assert result.queries <= 200
    assert result.fidelity > 0.5


def test_natural_pool_stays_in_bounds() -> None:
    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    bounds = feature_bounds(model, test.x)
    pool = natural_pool(model, test.x[:50], bounds, 64, np.random.default_rng(0))
    assert pool.shape == (64, 1, 8, 8)
    assert pool.min() >= 0.0 and pool.max() <= 1.0
    assert pool.std() > 0.1


@pytest.mark.parametrize("budget", [0, -5])
def test_non_positive_budget_is_a_usage_error(
    budget: int, cancer: tuple[Model, Dataset, Dataset]
) -> None:
    model, attacker, evaluation = cancer
    with pytest.raises(UsageError, match="positive"):
        extract(model, attacker.x, evaluation, strategy="random", budget=budget, seed=0)


def test_unknown_strategy_and_mismatched_features(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, evaluation = cancer
    with pytest.raises(UsageError, match="strategy"):
        extract(model, attacker.x, evaluation, strategy="magic", budget=10, seed=0)
    with pytest.raises(DataError, match="attacker data"):
        extract(model, attacker.x[:, :29], evaluation, strategy="random", budget=10, seed=0)
    with pytest.raises(DataError, match="attacker data"):
        equation_solving(model, attacker.x[:, :29], evaluation, seed=0)


def test_oracle_counts_and_enforces_the_budget(cancer: tuple[Model, Dataset, Dataset]) -> None:
    model, attacker, _ = cancer
    oracle = Oracle(model, budget=10)
    oracle.query(attacker.x[:6])
    assert oracle.queries == 6 and oracle.remaining == 4
    with pytest.raises(UsageError, match="exceed the budget"):
        oracle.query(attacker.x[:5])
    assert oracle.queries == 6
