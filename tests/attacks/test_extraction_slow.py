"""Benchmark-sized extraction target: a digits-cnn clone within 2,000 queries (make bench)."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.extraction import extract
from bastion.core.dataset import Dataset
from bastion.zoo import build, entry


@pytest.mark.slow
def test_digits_cnn_clone_reaches_90_percent_fidelity_in_2000_queries() -> None:
    victim = build("digits-cnn")
    train, test = entry("digits-cnn").load_data()
    order = np.random.default_rng(0).permutation(len(test))
    attacker = test.subset(np.sort(order[:180]))
    held = test.subset(np.sort(order[180:]))
    evaluation = Dataset(
        np.concatenate([held.x, train.x]), np.concatenate([held.labels, train.labels])
    )
    result = extract(victim, attacker.x, evaluation, strategy="knockoff", budget=2000, seed=0)
    assert result.queries <= 2000
    assert result.fidelity >= 0.9
