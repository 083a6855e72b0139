"""Tabular evasion: cheapest applicant-controlled flips, and the constraints they must keep."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sklearn.linear_model import LogisticRegression

from bastion.attacks.evasion.tabular import TabularConstraints, cheapest_flip
from bastion.core.adapters.sklearn import SklearnModel
from bastion.core.errors import DataError, UsageError
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def cancer():
    _, test = entry("cancer-logreg").load_data()
    names = test.feature_names
    constraints = TabularConstraints.for_dataset(
        test,
        immutable=[n for n in names if n.startswith("worst")],
        cost={n: 3.0 for n in names if n.endswith("error")},
    )
    return test, constraints


@pytest.mark.parametrize("name", ["cancer-logreg", "cancer-gbt"])
def test_cheapest_flip_changes_the_decision_within_constraints(cancer, name) -> None:
    test, constraints = cancer
    model = build(name)
    x = test.x[:25]
    r = cheapest_flip(model, x, constraints, n_grid=11, max_changes=3)
    assert r.success.mean() > 0.4
    assert constraints.satisfied(r.x_adv).all()
    immutable = sorted(constraints.immutable)
    np.testing.assert_allclose(r.x_adv[:, immutable], x[:, immutable])
    new = model.predict_proba(r.x_adv.astype(np.float32)).argmax(axis=1)
    assert np.all(new[r.success] != r.original_label[r.success])
    assert np.all(r.queries > 0)
    for i in np.flatnonzero(r.success):
        assert r.edits[i] and abs(sum(e["cost"] for e in r.edits[i]) - r.cost[i]) < 1e-6
        assert all(not str(e["feature"]).startswith("worst") for e in r.edits[i])
    assert np.all(np.isinf(r.cost[~r.success]))


def test_single_feature_search_finds_the_cheapest_edit_on_a_linear_model() -> None:
    # y = 1 iff x0 + 5 x1 > 4.5 with x0 in [0, 10], x1 in [0, 1]. From (1, 0.3): raising x0 by 2
    # costs 0.2 of its range, raising x1 by 0.4 costs 0.4 of its range.
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 1, (600, 2)) * [10, 1]
    y = (x[:, 0] + 5 * x[:, 1] > 4.5).astype(int)
    model = SklearnModel(LogisticRegression(C=1e3, max_iter=2000).fit(x, y))
    c = TabularConstraints(lower=np.array([0.0, 0.0]), upper=np.array([10.0, 1.0]))
    point = np.array([[1.0, 0.3]], dtype=np.float32)
    r = cheapest_flip(model, point, c, n_grid=101)
    assert r.success[0]
    assert [e["feature"] for e in r.edits[0]] == ["#0"]
    assert r.cost[0] == pytest.approx(0.2, abs=0.03)
    only_x1 = TabularConstraints(lower=c.lower, upper=c.upper, immutable=frozenset({0}))
    r1 = cheapest_flip(model, point, only_x1, n_grid=101)
    assert [e["feature"] for e in r1.edits[0]] == ["#1"]
    assert r1.cost[0] == pytest.approx(0.4, abs=0.03)
    assert r1.x_adv[0, 0] == pytest.approx(1.0)


def test_integer_and_categorical_features_take_allowed_values(cancer) -> None:
    test, _ = cancer
    model = build("cancer-gbt")
    names = test.feature_names
    lo, hi = test.bounds
    cats = {names[1]: tuple(float(v) for v in np.linspace(lo[1], hi[1], 5))}
    x = test.x[:15].copy()
    x[:, 1] = cats[names[1]][2]
    x[:, 0] = np.round(x[:, 0])
    c = TabularConstraints.for_dataset(
        test,
        integer=[names[0]],
        categorical=cats,
        actionable=[names[0], names[1], names[20], names[27]],
    )
    r = cheapest_flip(model, x, c, n_grid=9, max_changes=3)
    assert c.satisfied(r.x_adv).all()
    assert np.all(r.x_adv[:, 0] == np.round(r.x_adv[:, 0]))
    assert set(np.round(r.x_adv[:, 1], 4)) <= set(np.round(cats[names[1]], 4))
    untouched = [j for j in range(30) if j not in (0, 1, 20, 27)]
    np.testing.assert_allclose(r.x_adv[:, untouched], x[:, untouched])


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (
            {"immutable": frozenset({0}), "actionable": frozenset({0, 1})},
            "immutable and actionable",
        ),
        ({"immutable": frozenset({0, 1, 2})}, "no feature is actionable"),
        ({"integer": frozenset({2})}, "no integer"),
        ({"categorical": {1: (5.0, 6.0)}}, "no value within"),
        ({"cost": np.array([1.0, -1.0, 1.0])}, "costs"),
        ({"immutable": frozenset({7})}, "out of range"),
    ],
)
def test_contradictory_constraints_are_refused(kwargs, match) -> None:
    c = TabularConstraints(
        lower=np.array([0.0, 0.0, 0.2]), upper=np.array([1.0, 1.0, 0.8]), **kwargs
    )
    with pytest.raises(UsageError, match=match):
        c.validate()


def test_inputs_violating_constraints_are_refused(cancer) -> None:
    test, constraints = cancer
    x = test.x[:3].copy()
    x[0, 5] = constraints.upper[5] + 1
    with pytest.raises(DataError, match="violate"):
        cheapest_flip(build("cancer-logreg"), x, constraints)
    bad = TabularConstraints(lower=constraints.upper, upper=constraints.lower)
    with pytest.raises(UsageError, match="lower bound"):
        cheapest_flip(build("cancer-logreg"), test.x[:3], bad)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    immutable=st.sets(st.integers(0, 4), max_size=3),
    integer=st.sets(st.integers(0, 4), max_size=2),
    costs=st.lists(st.floats(0.1, 5.0), min_size=5, max_size=5),
)
def test_results_always_satisfy_random_constraints(seed, immutable, integer, costs) -> None:
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(60, 5))
    y = (x @ rng.normal(size=5) > 0).astype(int)
    if y.min() == y.max():
        y[0] = 1 - y[0]
    model = SklearnModel(LogisticRegression().fit(x, y))
    lo, hi = np.floor(x.min(axis=0)) - 1, np.ceil(x.max(axis=0)) + 1
    c = TabularConstraints(
        lower=lo,
        upper=hi,
        immutable=frozenset(immutable),
        integer=frozenset(integer),
        cost=np.array(costs),
    )
    pts = x[:8].copy()
    for j in integer:
        pts[:, j] = np.round(pts[:, j])
    r = cheapest_flip(model, pts.astype(np.float32), c, n_grid=7, max_changes=2)
    assert c.satisfied(r.x_adv).all()
    np.testing.assert_allclose(r.x_adv[:, sorted(immutable)], pts[:, sorted(immutable)], atol=1e-6)
    new = model.predict_proba(r.x_adv.astype(np.float32)).argmax(axis=1)
    assert np.all(new[r.success] != r.original_label[r.success])
