"""The demo zoo: accuracy floors, deterministic training, safe caching."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.core.model import predict_labels
from bastion.zoo import ZOO, build, entry
from bastion.zoo.registry import model_path

FLOORS = {
    "digits-cnn": 0.97,
    "digits-mlp": 0.95,
    "digits-mlp-overfit": 0.90,
    "cancer-logreg": 0.95,
    "cancer-gbt": 0.90,
}


@pytest.mark.parametrize("name", sorted(ZOO))
def test_accuracy_floor(name: str) -> None:
    model = build(name)
    _, test = entry(name).load_data()
    accuracy = float((predict_labels(model, test.x) == test.labels).mean())
    assert accuracy >= FLOORS[name], f"{name}: {accuracy:.3f}"


def test_digits_split_and_bounds() -> None:
    train, test = entry("digits-cnn").load_data()
    assert len(test) == 360 and len(train) == 1437
    assert test.x.shape[1:] == (1, 8, 8) and test.x.min() >= 0 and test.x.max() <= 1
    assert test.bounds is not None and test.bounds[1].shape == (1, 8, 8)


def test_training_is_deterministic() -> None:
    e = entry("digits-mlp")
    train, test = e.load_data()
    a, b = e.train(train, 5), e.train(train, 5)
    np.testing.assert_array_equal(a.predict_proba(test.x), b.predict_proba(test.x))
    c = e.train(train, 6)
    assert not np.array_equal(a.predict_proba(test.x), c.predict_proba(test.x))


def test_cache_is_reused_and_safe_format(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_CACHE", str(tmp_path))
    build("cancer-logreg")
    path = model_path("cancer-logreg")
    assert path.suffix == ".skops" and path.is_relative_to(tmp_path)
    stamp = path.stat().st_mtime_ns
    build("cancer-logreg")
    assert path.stat().st_mtime_ns == stamp
    build("digits-mlp")
    assert model_path("digits-mlp").read_bytes()[8:9] == b"{"  # safetensors header, not pickle
