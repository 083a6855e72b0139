"""Watermarks: key-derived trigger sets, embedding, black-box verification, removal attacks."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.core.dataset import Dataset
from bastion.core.errors import UsageError
from bastion.core.model import Model
from bastion.defenses.watermark import (
    binomial_p_value,
    embed,
    fine_tune,
    opens_commitment,
    ownership_record,
    prune,
    trigger_set,
    verify,
)
from bastion.zoo import build, entry

KEY = bytes(range(32))
OTHER_KEY = bytes(range(1, 33))


class BlackBox:
    """Only what an API caller sees: shape, classes, bounds and probabilities."""

    def __init__(self, inner: Model) -> None:
        self._inner = inner
        self.n_classes = inner.n_classes
        self.input_shape = inner.input_shape
        self.input_bounds = inner.input_bounds
        self.queries = 0

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        self.queries += len(x)
        return self._inner.predict_proba(x)


@pytest.fixture(scope="module")
def digits() -> tuple[Dataset, Dataset]:
    return entry("digits-cnn").load_data()


@pytest.fixture(scope="module")
def marked(digits) -> tuple[Model, Model]:
    train, _ = digits
    base = build("digits-cnn")
    return base, embed(base, train, KEY, seed=0)


def accuracy(model: Model, data: Dataset) -> float:
    return float((model.predict_proba(data.x).argmax(axis=1) == data.labels).mean())


def test_short_key_is_refused() -> None:
    with pytest.raises(UsageError, match="at least 16"):
        trigger_set(b"too short", (1, 8, 8), 10, (0.0, 1.0))


def test_trigger_set_is_reproducible_and_key_dependent() -> None:
    a = trigger_set(KEY, (1, 8, 8), 10, (0.0, 1.0), 50)
    b = trigger_set(KEY, (1, 8, 8), 10, (0.0, 1.0), 50)
    c = trigger_set(OTHER_KEY, (1, 8, 8), 10, (0.0, 1.0), 50)
    assert np.array_equal(a.x, b.x) and np.array_equal(a.labels, b.labels)
    assert not np.array_equal(a.x, c.x)
    assert a.x.shape == (50, 1, 8, 8) and a.x.min() >= 0.0 and a.x.max() <= 1.0
    assert set(np.unique(a.labels)) <= set(range(10))


def test_binomial_p_value_matches_closed_form() -> None:
    assert binomial_p_value(0, 10, 0.1) == pytest.approx(1.0)
    assert binomial_p_value(10, 10, 0.1) == pytest.approx(1e-10)
    assert binomial_p_value(1, 1, 0.5) == pytest.approx(0.5)


def test_watermarked_model_verifies_black_box(marked, digits) -> None:
    base, wm = marked
    _, test = digits
    box = BlackBox(wm)
    verdict = verify(box, KEY)
    assert box.queries == 100
    assert verdict.verified and verdict.p_value < 1e-6
    assert accuracy(wm, test) >= accuracy(base, test) - 0.01


def test_unmarked_model_and_wrong_key_do_not_verify(marked) -> None:
    base, wm = marked
    assert verify(base, KEY).p_value > 0.01
    assert verify(wm, OTHER_KEY).p_value > 0.01


def test_watermark_survives_fine_tuning_and_pruning(marked, digits) -> None:
    _, wm = marked
    train, _ = digits
    tuned = fine_tune(wm, train.sample(len(train) // 10, seed=1), epochs=10)
    assert verify(tuned, KEY).p_value < 1e-6
    assert verify(prune(wm, 0.5), KEY).p_value < 1e-6
    with pytest.raises(UsageError, match="pruning fraction"):
        prune(wm, 1.0)


def test_ownership_record_commits_to_the_key(marked) -> None:
    _, wm = marked
    record = ownership_record(KEY, wm)
    assert KEY.hex() not in str(record)
    assert opens_commitment(record, KEY)
    assert not opens_commitment(record, OTHER_KEY)
    assert record["type"] == "watermark.ownership" and record["timestamp"]
