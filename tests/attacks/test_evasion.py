"""White-box and black-box evasion attacks on the zoo's digits CNN and small random models."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.attacks.evasion import apgd, fgsm, pgd
from bastion.attacks.evasion.apgd import checkpoints
from bastion.attacks.evasion.cw import carlini_wagner_l2
from bastion.attacks.evasion.hopskipjump import hop_skip_jump
from bastion.attacks.evasion.square import square_attack
from bastion.core.adapters.torch import TorchModel
from bastion.core.errors import DataError, UsageError
from bastion.zoo import build, entry


class LabelsOnly:
    """A Model that hides its gradients and counts the rows it is asked about."""

    def __init__(self, inner: TorchModel) -> None:
        self.inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds
        self.rows = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.rows += len(x)
        return self.inner.predict_proba(x)


@pytest.fixture(scope="module")
def digits() -> tuple[TorchModel, np.ndarray, np.ndarray]:
    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    return model, test.x[:48], test.labels[:48]  # type: ignore[return-value]


def _accuracy(model: TorchModel, x: np.ndarray, y: np.ndarray) -> float:
    return float((model.predict_proba(x).argmax(axis=1) == y).mean())


@pytest.mark.parametrize("norm,eps", [("linf", 0.15), ("l2", 1.0)])
def test_white_box_attacks_stay_in_ball_and_box_and_lower_accuracy(digits, norm, eps) -> None:
    model, x, y = digits
    clean = _accuracy(model, x, y)
    for result in (
        fgsm(model, x, y, epsilon=eps, norm=norm),
        pgd(model, x, y, epsilon=eps, norm=norm, steps=20),
        apgd(model, x, y, epsilon=eps, norm=norm, n_iter=30),
        apgd(model, x, y, epsilon=eps, norm=norm, loss="dlr-targeted", n_iter=20, n_targets=2),
    ):
        assert result.x_adv.shape == x.shape
        assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
        assert result.norm.max() <= eps + 1e-5
        pred = model.predict_proba(result.x_adv).argmax(axis=1)
        np.testing.assert_array_equal(result.success, pred != y)
        assert 1 - result.success.mean() < clean, result.attack


def test_iterative_attacks_beat_fgsm(digits) -> None:
    model, x, y = digits
    one = fgsm(model, x, y, epsilon=0.1).success.mean()
    assert pgd(model, x, y, epsilon=0.1, steps=40).success.mean() >= one
    assert apgd(model, x, y, epsilon=0.1, n_iter=50).success.mean() >= one


def test_apgd_checkpoints_follow_croce_hein_schedule() -> None:
    assert checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]


def test_pgd_is_deterministic_for_a_seed(digits) -> None:
    model, x, y = digits
    a = pgd(model, x, y, epsilon=0.1, steps=5, seed=3)
    b = pgd(model, x, y, epsilon=0.1, steps=5, seed=3)
    np.testing.assert_array_equal(a.x_adv, b.x_adv)


def test_carlini_wagner_reports_boundary_distance(digits) -> None:
    model, x, y = digits
    r = carlini_wagner_l2(model, x[:8], y[:8], steps=30, search_steps=2)
    assert r.success.mean() > 0.8
    pred = model.predict_proba(r.x_adv).argmax(axis=1)
    assert np.all(pred[r.success] != y[:8][r.success])
    assert np.all(np.isfinite(r.norm[r.success])) and np.all(np.isinf(r.norm[~r.success]))
    assert r.x_adv.min() >= 0 and r.x_adv.max() <= 1


def test_square_attack_counts_every_query_through_the_model_contract(digits) -> None:
    model, x, y = digits
    blind = LabelsOnly(model)
    r = square_attack(blind, x, y, epsilon=0.2, n_queries=150, seed=1)
    assert int(r.queries.sum()) == blind.rows
    assert r.success.mean() > 0.5
    assert r.norm.max() <= 0.2 + 1e-5 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1
    pred = model.predict_proba(r.x_adv).argmax(axis=1)
    assert np.all(pred[r.success] != y[r.success])


def test_square_l2_stays_in_ball(digits) -> None:
    model, x, y = digits
    r = square_attack(LabelsOnly(model), x[:16], y[:16], epsilon=1.0, norm="l2", n_queries=60)
    assert r.norm.max() <= 1.0 + 1e-4 and r.x_adv.min() >= 0 and r.x_adv.max() <= 1


def test_hop_skip_jump_uses_labels_only_and_shrinks_distance(digits) -> None:
    model, x, y = digits
    blind = LabelsOnly(model)
    short = hop_skip_jump(blind, x[:12], y[:12], iterations=1, init_evals=20, max_evals=50, seed=0)
    longer = hop_skip_jump(
        LabelsOnly(model), x[:12], y[:12], iterations=6, init_evals=20, max_evals=50, seed=0
    )
    assert int(short.queries.sum()) == blind.rows
    assert longer.success.all()
    assert np.all(model.predict_proba(longer.x_adv).argmax(axis=1) != y[:12])
    assert np.median(longer.norm) < np.median(short.norm)


def test_white_box_attack_refuses_model_without_gradients(digits) -> None:
    model, x, y = digits
    with pytest.raises(UsageError, match="white-box"):
        pgd(LabelsOnly(model), x, y, epsilon=0.1)
    with pytest.raises(UsageError, match="white-box"):
        apgd(
            build("cancer-logreg"),
            np.zeros((2, 30), np.float32),
            np.zeros(2, np.int64),
            epsilon=0.1,
        )


@pytest.mark.parametrize("eps", [0.0, -0.1, float("nan"), 1.5])
def test_epsilon_outside_data_range_is_refused(digits, eps) -> None:
    model, x, y = digits
    with pytest.raises(UsageError, match="epsilon"):
        fgsm(model, x, y, epsilon=eps)


def test_bounds_excluding_clean_input_are_refused(digits) -> None:
    model, x, y = digits
    with pytest.raises(DataError, match="exclude"):
        pgd(model, x, y, epsilon=0.1, bounds=(0.2, 1.0))
    with pytest.raises(UsageError, match="lower bound"):
        pgd(model, x, y, epsilon=0.1, bounds=(1.0, 0.0))


def test_unknown_norm_is_refused(digits) -> None:
    model, x, y = digits
    with pytest.raises(UsageError, match="norm"):
        pgd(model, x, y, epsilon=0.1, norm="l1")


def test_attack_on_unbounded_model_uses_data_range_for_epsilon_check() -> None:
    torch.manual_seed(0)
    m = TorchModel(torch.nn.Linear(4, 3), input_shape=(4,), n_classes=3)
    x = np.random.default_rng(0).uniform(-1, 1, (10, 4)).astype(np.float32)
    y = m.predict_proba(x).argmax(axis=1)
    assert pgd(m, x, y, epsilon=0.5, steps=5).norm.max() <= 0.5 + 1e-5
    with pytest.raises(UsageError, match="exceeds the data range"):
        pgd(m, x, y, epsilon=100.0)


class CountingLogits:
    """A differentiable Model whose logits count every row they evaluate."""

    def __init__(self, inner: TorchModel) -> None:
        self.inner, self.module = inner, inner.module
        self.n_classes, self.input_shape = inner.n_classes, inner.input_shape
        self.input_bounds = inner.input_bounds
        self.rows = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.inner.predict_proba(x)

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        self.rows += len(x)
        return self.inner.logits(x)


@pytest.mark.parametrize(
    "attack",
    [
        lambda m, x, y: pgd(m, x, y, epsilon=0.15, steps=8, restarts=3),
        lambda m, x, y: apgd(m, x, y, epsilon=0.15, n_iter=20),
        lambda m, x, y: apgd(m, x, y, epsilon=0.15, loss="dlr-targeted", n_iter=10, n_targets=2),
    ],
)
def test_reported_queries_are_the_evaluations_each_example_took(digits, attack) -> None:
    model, x, y = digits
    counting = CountingLogits(model)
    result = attack(counting, x, y)
    assert int(result.queries.sum()) == counting.rows  # counted before `success` is judged
    # examples broken early stop paying: the counts differ between examples
    assert result.queries.min() < result.queries.max()
    assert np.all(result.queries[~result.success] == result.queries.max())


def test_square_linf_redraws_proposals_that_would_change_nothing() -> None:
    from bastion.attacks.evasion._common import Box, generator
    from bastion.attacks.evasion.square import _linf_proposal, _windows

    gen = generator(0)
    xa = torch.full((256, 1, 8, 8), 0.5)
    xb = xa + 0.1  # every pixel already at +epsilon: a +1 sign proposes the same point
    box = Box(torch.zeros(1, 1, 8, 8), torch.ones(1, 1, 8, 8))
    cand = _linf_proposal(xa, xb, _windows(256, 8, 8, 3, gen), 0.1, box, gen)
    moved = (cand != xb).flatten(1).any(dim=1)
    assert float(moved.float().mean()) > 0.98  # without redraws about half would be no-ops
    assert torch.all((cand - xa).abs() <= 0.1 + 1e-6)
    # pinned by the box, nothing can move; the proposal stays put rather than looping forever
    pinned = Box(xa[:1], xa[:1])
    still = _linf_proposal(xa, xa, _windows(256, 8, 8, 3, gen), 0.1, pinned, gen)
    assert torch.equal(still, xa)
