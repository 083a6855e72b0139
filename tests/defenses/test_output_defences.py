"""Output defences: each keeps the top-1 label (BDPL flips only near the boundary)."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.errors import ConfigError
from bastion.defenses.output import (
    BoundaryRandomizedResponse,
    GaussianNoise,
    LabelOnly,
    ReverseSigmoid,
    Rounding,
    TopK,
    output_defence,
)


class Fixed:
    """A model answering fixed probabilities row by row (indexed by the input's first value)."""

    def __init__(self, probs: np.ndarray) -> None:
        self.probs = probs
        self.n_classes = probs.shape[1]
        self.input_shape = (2,)
        self.input_bounds = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.probs[np.asarray(x)[:, 0].astype(int)]


@pytest.fixture
def model() -> Fixed:
    rng = np.random.default_rng(0)
    logits = rng.normal(0, 2, (200, 5))
    p = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Fixed(p)


def queries(n: int = 200) -> np.ndarray:
    return np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)


@pytest.mark.parametrize(
    "wrap",
    [
        lambda m: TopK(m, 2),
        lambda m: Rounding(m, 1),
        lambda m: Rounding(m, 0),
        LabelOnly,
        lambda m: GaussianNoise(m, 0.3),
        lambda m: ReverseSigmoid(m, 0.7, 0.4),
    ],
)
def test_top1_kept_and_rows_are_distributions(model: Fixed, wrap: object) -> None:
    defended = wrap(model)  # type: ignore[operator]
    x = queries()
    out = defended.predict_proba(x)
    assert out.shape == (200, 5)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, atol=1e-9)
    assert (out >= 0).all()
    assert (out.argmax(axis=1) == model.predict_proba(x).argmax(axis=1)).all()


def test_top_k_reveals_only_k(model: Fixed) -> None:
    out = TopK(model, 2).predict_proba(queries())
    assert ((out > 0).sum(axis=1) == 2).all()


def test_label_only_is_one_hot(model: Fixed) -> None:
    out = LabelOnly(model).predict_proba(queries())
    assert set(np.unique(out)) == {0.0, 1.0}


def test_perturbations_change_probabilities_but_repeat_identically(model: Fixed) -> None:
    x = queries()
    for defended in (GaussianNoise(model, 0.2), ReverseSigmoid(model)):
        a, b = defended.predict_proba(x), defended.predict_proba(x)
        np.testing.assert_array_equal(a, b)  # keyed by the input: repeating averages nothing out
        assert np.abs(a - model.predict_proba(x)).max() > 0.05


def test_reverse_sigmoid_clips_an_overshoot_to_zero_and_renormalises() -> None:
    # beta = 3 pushes a 0.99 top-1 to 0.99 - 3 * (sigmoid(0.4 * logit(0.99)) - 1/2) < 0: the
    # paper clips it to 0 and renormalises (alpha); abs() would turn -0.098 into +0.098
    probs = np.array([[0.99, 0.005, 0.005]])
    p = np.clip(probs, 1e-7, 1 - 1e-7)
    raw = p - 3.0 * (1 / (1 + np.exp(-0.4 * np.log(p / (1 - p)))) - 0.5)
    assert raw[0, 0] < 0
    out = ReverseSigmoid(Fixed(probs), beta=3.0, gamma=0.4).predict_proba(queries(1))
    assert out.argmax() == 0 and out.sum() == pytest.approx(1.0)
    # the clipped top-1 swaps places with the runner-up: one class keeps (almost) no mass
    assert np.sort(out[0])[0] < 1e-6
    np.testing.assert_allclose(np.sort(out[0])[1:], [0.5, 0.5], atol=1e-5)


def test_gaussian_noise_depends_on_the_key(model: Fixed) -> None:
    x = queries()
    a = GaussianNoise(model, 0.2, b"one").predict_proba(x)
    b = GaussianNoise(model, 0.2, b"two").predict_proba(x)
    assert not np.allclose(a, b)


def test_bdpl_flips_only_inside_the_boundary_zone_at_the_randomized_response_rate() -> None:
    n = 4000
    margin = np.where(np.arange(n) < n // 2, 0.05, 0.6)  # half near the boundary
    top = (1 + margin) / 2
    probs = np.stack([top, 1 - top], axis=1)
    model = Fixed(probs)
    x = np.stack([np.arange(n), np.zeros(n)], axis=1).astype(np.float32)
    out = BoundaryRandomizedResponse(model, epsilon=1.0, delta=0.2).predict_proba(x)
    flipped = out.argmax(axis=1) != 0
    assert not flipped[n // 2 :].any()
    rate = flipped[: n // 2].mean()
    assert abs(rate - 1 / (1 + np.e)) < 0.04


@pytest.mark.parametrize(
    ("name", "params"),
    [
        ("top-k", {"k": 9}),
        ("rounding", {"decimals": 9}),
        ("gaussian", {"sigma": 0}),
        ("reverse-sigmoid", {"beta": -1}),
        ("bdpl", {"epsilon": 0}),
        ("nope", {}),
    ],
)
def test_bad_settings_are_refused(model: Fixed, name: str, params: dict[str, float]) -> None:
    with pytest.raises(ConfigError):
        output_defence(model, name, **params)


def test_none_returns_the_model(model: Fixed) -> None:
    assert output_defence(model, "none") is model
