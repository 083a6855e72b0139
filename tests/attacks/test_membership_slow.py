"""Benchmark-sized membership target: LiRA beats the global threshold at low FPR (make bench)."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks import membership_lira as lira
from bastion.attacks.membership import membership_targets, query_targets, threshold_attack
from bastion.attacks.membership_shadow import train_shadows
from bastion.zoo import build, entry


@pytest.mark.slow
def test_lira_beats_global_threshold_on_overfit_model() -> None:
    e = entry("digits-mlp-overfit")
    victim = build("digits-mlp-overfit")
    members, nonmembers = e.load_data()
    pool = membership_targets(members, nonmembers)
    is_member = np.arange(len(pool)) < len(members)
    shadows = train_shadows(
        e.train, pool, n_shadow=16, keep_fraction=len(members) / len(pool), seed=0
    )
    probs, _ = query_targets(victim, pool)
    result = lira.lira(probs, pool.labels, shadows, is_member, online=True, fixed_variance=True)
    threshold = threshold_attack(victim, members, nonmembers)
    assert result.tpr_at_fpr[0.001] >= 5 * threshold.tpr_at_fpr[0.001]
    assert result.tpr_at_fpr[0.001] > 0.01
    assert result.tpr_at_fpr[0.01] > 2 * threshold.tpr_at_fpr[0.01]
    assert result.auc > threshold.auc
