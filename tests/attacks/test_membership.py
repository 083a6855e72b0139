"""Membership inference: metrics, threshold and shadow-model attacks on a model that memorises."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks import membership_lira as lira
from bastion.attacks.membership import (
    evaluate,
    membership_targets,
    query_targets,
    threshold_attack,
    true_class_log_odds,
)
from bastion.attacks.membership_shadow import ShadowSet, keep_matrix, train_shadows
from bastion.attacks.oracle import LabelOnlyError
from bastion.core.adapters.sklearn import SklearnModel
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model


def train_forest(data: Dataset, seed: int) -> SklearnModel:
    """A random forest that memorises its (random) labels: a strong membership target."""
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


@pytest.fixture(scope="module")
def memorised() -> tuple[Model, Dataset, Dataset]:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(240, 6)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    flip = rng.random(240) < 0.3  # label noise only members can have memorised
    y[flip] = 1 - y[flip]
    members, nonmembers = Dataset(x[:120], y[:120]), Dataset(x[120:], y[120:])
    return train_forest(members, 0), members, nonmembers


@pytest.fixture(scope="module")
def shadows(memorised: tuple[Model, Dataset, Dataset]) -> tuple[Dataset, ShadowSet]:
    _, members, nonmembers = memorised
    pool = membership_targets(members, nonmembers)
    return pool, train_shadows(train_forest, pool, n_shadow=8, seed=0, n_jobs=2)


def test_metrics_on_known_scores() -> None:
    is_member = np.array([True] * 100 + [False] * 100)
    perfect = evaluate("x", is_member.astype(float), is_member, 0)
    assert perfect.auc == 1.0 and perfect.tpr_at_fpr[0.001] == 1.0
    inverted = evaluate("x", (~is_member).astype(float), is_member, 0)
    assert inverted.auc == 0.0 and inverted.tpr_at_fpr[0.01] == 0.0
    assert perfect.min_fpr == 0.01
    with pytest.raises(DataError, match="both"):
        evaluate("x", np.ones(5), np.ones(5, bool), 0)


def test_log_odds_is_stable_when_confidence_rounds_to_one() -> None:
    probs = np.array([[1.0, 1e-20], [0.5, 0.5]], dtype=np.float64)
    phi = true_class_log_odds(probs, np.array([0, 1]))
    assert phi[0] == pytest.approx(np.log(1e20)) and phi[1] == pytest.approx(0.0)


def test_threshold_attack_beats_chance(memorised: tuple[Model, Dataset, Dataset]) -> None:
    model, members, nonmembers = memorised
    result = threshold_attack(model, members, nonmembers)
    assert result.attack == "loss" and result.auc > 0.7
    assert result.queries == len(members) + len(nonmembers)


def test_label_only_falls_back_to_gap_or_explains(
    memorised: tuple[Model, Dataset, Dataset],
) -> None:
    model, members, nonmembers = memorised
    result = threshold_attack(LabelOnly(model), members, nonmembers)
    assert result.attack == "gap" and result.label_only
    with pytest.raises(LabelOnlyError, match="only labels"):
        threshold_attack(LabelOnly(model), members, nonmembers, fallback=False)


def test_shadow_attacks_separate_members(
    memorised: tuple[Model, Dataset, Dataset], shadows: tuple[Dataset, ShadowSet]
) -> None:
    model, members, _ = memorised
    pool, shadow_set = shadows
    probs, _ = query_targets(model, pool)
    is_member = np.arange(len(pool)) < len(members)
    results = [
        lira.lira(probs, pool.labels, shadow_set, is_member, online=True),
        lira.lira(probs, pool.labels, shadow_set, is_member, online=True, fixed_variance=True),
        lira.lira(probs, pool.labels, shadow_set, is_member, online=False),
        lira.rmia(probs, pool.labels, shadow_set, is_member),
        lira.rmia(probs, pool.labels, shadow_set, is_member, offline_a=0.3),
        lira.shokri(probs, pool.labels, shadow_set, is_member, seed=0),
    ]
    names = [r.attack for r in results]
    assert names == [
        "lira-online",
        "lira-online-fixed",
        "lira-offline",
        "rmia",
        "rmia-offline",
        "shokri",
    ]
    for r in results:
        assert r.auc > 0.7, (r.attack, r.auc)
    threshold = threshold_attack(model, *memorised[1:])
    assert results[1].tpr_at_fpr[0.01] >= threshold.tpr_at_fpr[0.01]


def test_parallel_shadows_match_sequential(shadows: tuple[Dataset, ShadowSet]) -> None:
    pool, parallel = shadows
    sequential = train_shadows(train_forest, pool, n_shadow=8, seed=0, n_jobs=1)
    np.testing.assert_array_equal(parallel.keep, sequential.keep)
    np.testing.assert_array_equal(parallel.probs, sequential.probs)


def test_keep_matrix_is_balanced() -> None:
    keep = keep_matrix(8, 50, 0.5, seed=1)
    assert (keep.sum(axis=0) == 4).all()


def test_too_little_data_or_bad_shadow_counts(memorised: tuple[Model, Dataset, Dataset]) -> None:
    _, members, nonmembers = memorised
    tiny = membership_targets(members.subset(slice(0, 10)), nonmembers.subset(slice(0, 10)))
    with pytest.raises(DataError, match="too few"):
        train_shadows(train_forest, tiny, n_shadow=4, seed=0)
    pool = membership_targets(members, nonmembers)
    with pytest.raises(UsageError, match="positive"):
        train_shadows(train_forest, pool, n_shadow=0, seed=0)
    with pytest.raises(DataError, match="at least 2"):
        train_shadows(train_forest, pool, n_shadow=1, seed=0)


def test_mismatched_feature_counts(memorised: tuple[Model, Dataset, Dataset]) -> None:
    model, members, nonmembers = memorised
    with pytest.raises(DataError, match="feature shape"):
        membership_targets(members, Dataset(nonmembers.x[:, :5], nonmembers.y))
    wrong = Dataset(members.x[:, :5], members.y)
    with pytest.raises(DataError, match="membership targets"):
        threshold_attack(model, wrong, Dataset(nonmembers.x[:, :5], nonmembers.y))
