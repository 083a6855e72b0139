"""Ensembles, random switching and transferability."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.evasion import pgd
from bastion.core.errors import UsageError
from bastion.core.model import is_differentiable
from bastion.defenses.ensemble import (
    AveragingEnsemble,
    RandomSwitching,
    VotingEnsemble,
    averaging_ensemble,
    transferability,
)
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def members():
    _, test = entry("digits-cnn").load_data()
    return [build("digits-cnn"), build("digits-mlp")], test.x[:80], test.labels[:80]


def test_averaging_is_the_mean_and_differentiable(members) -> None:
    ms, x, y = members
    ens = averaging_ensemble(ms)
    assert is_differentiable(ens)
    np.testing.assert_allclose(
        ens.predict_proba(x), (ms[0].predict_proba(x) + ms[1].predict_proba(x)) / 2, atol=1e-6
    )
    r = pgd(ens, x, y, epsilon=0.2, steps=10)
    assert r.success.mean() > 0.5


def test_voting_returns_vote_shares(members) -> None:
    ms, x, _ = members
    votes = VotingEnsemble([ms[0], ms[1], ms[0]]).predict_proba(x)
    assert set(np.unique(votes)) <= {0.0, 1 / 3, 2 / 3, 1.0}
    np.testing.assert_allclose(votes.sum(axis=1), 1.0)
    assert not is_differentiable(VotingEnsemble(ms))


def test_switching_answers_each_row_with_some_member(members) -> None:
    ms, x, _ = members
    sw = RandomSwitching(ms, seed=1)
    probs = sw.predict_proba(x)
    a, b = ms[0].predict_proba(x), ms[1].predict_proba(x)
    from_a = np.all(np.isclose(probs, a, atol=1e-6), axis=1)
    from_b = np.all(np.isclose(probs, b, atol=1e-6), axis=1)
    assert np.all(from_a | from_b) and from_a.any() and from_b.any()
    np.testing.assert_array_equal(RandomSwitching(ms, seed=1).predict_proba(x), probs)


def test_transferability_measures_crafted_examples(members) -> None:
    ms, x, y = members
    ens = AveragingEnsemble(ms)
    t = transferability(ms, ens, x, y, epsilon=0.15, steps=10)
    assert len(t.matrix) == 2 and all(len(row) == 2 for row in t.matrix)
    assert t.matrix[0][0] == pytest.approx(1.0) and t.matrix[1][1] == pytest.approx(1.0)
    assert 0.0 < t.mean_to_ensemble <= 1.0
    assert all(0.0 <= v <= 1.0 for v in t.to_ensemble)


def test_members_must_agree() -> None:
    with pytest.raises(UsageError, match="disagree"):
        AveragingEnsemble([build("digits-cnn"), build("cancer-logreg")])
    with pytest.raises(UsageError, match="at least two"):
        VotingEnsemble([build("digits-cnn")])
