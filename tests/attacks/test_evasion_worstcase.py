"""Worst-case evaluation: the per-example strongest result, survivors only, monotone in epsilon."""

from __future__ import annotations

import numpy as np
import pytest

from bastion.attacks.evasion import apgd, fgsm, pgd
from bastion.attacks.evasion.worstcase import Suite, perturbation_norms, worst_case
from bastion.core.errors import UsageError
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def digits():
    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    return model, test.x[:60], test.labels[:60]


def test_worst_case_is_no_weaker_than_any_single_attack(digits) -> None:
    model, x, y = digits
    suite = Suite(pgd_steps=10, apgd_iter=20, apgd_targets=2)
    wc = worst_case(model, x, y, epsilons=[0.1], suite=suite)
    for single in (fgsm(model, x, y, epsilon=0.1), pgd(model, x, y, epsilon=0.1, steps=10)):
        assert wc.robust_accuracy[0] <= 1 - single.success.mean() + 1e-9
    robust_mask = np.isinf(wc.min_broken_epsilon)
    pred = model.predict_proba(wc.x_adv[0]).argmax(axis=1)
    # every point counted as broken really is misclassified by its stored adversarial example
    assert np.all(pred[~robust_mask] != y[~robust_mask])
    assert np.all(pred[robust_mask] == y[robust_mask])
    assert wc.attacks == ["fgsm", "pgd", "apgd-ce", "apgd-dlr-targeted"]


def test_expensive_attacks_only_see_survivors(digits) -> None:
    model, x, y = digits
    suite = Suite(pgd_steps=10, apgd_iter=20, apgd_targets=0)
    wc = worst_case(model, x, y, epsilons=[0.05, 0.1, 0.2], suite=suite)
    clean_correct = int(np.sum(wc.min_broken_epsilon != 0))
    fgsm_calls = wc.queries["fgsm"] // 2
    apgd_calls = wc.queries["apgd-ce"] // (suite.apgd_iter + 1)
    assert fgsm_calls < 3 * clean_correct  # epsilons after the first only re-attack survivors
    assert apgd_calls < fgsm_calls
    assert wc.robust_accuracy == sorted(wc.robust_accuracy, reverse=True)
    assert wc.robust_accuracy[-1] < 0.2
    assert 0.05 - 1e-6 <= wc.median_min_perturbation <= 0.2 + 1e-6 or np.isinf(
        wc.median_min_perturbation
    )
    norms = perturbation_norms(wc, x, 1)
    assert len(norms) and norms.max() <= 0.1 + 1e-5


def test_black_box_model_gets_square_only() -> None:
    class Blind:
        def __init__(self, inner):
            self.inner, self.n_classes = inner, inner.n_classes
            self.input_shape, self.input_bounds = inner.input_shape, inner.input_bounds

        def predict_proba(self, x):
            return self.inner.predict_proba(x)

    model = build("digits-cnn")
    _, test = entry("digits-cnn").load_data()
    wc = worst_case(
        Blind(model), test.x[:20], test.labels[:20], epsilons=[0.2], suite=Suite(square_queries=100)
    )
    assert wc.attacks == ["square"]
    assert wc.robust_accuracy[0] < wc.clean_accuracy


def test_apgd_targeted_breaks_what_ce_leaves(digits) -> None:
    model, x, y = digits
    ce = apgd(model, x, y, epsilon=0.1, n_iter=50)
    tgt = apgd(model, x, y, epsilon=0.1, loss="dlr-targeted", n_iter=50, n_targets=3)
    assert (ce.success | tgt.success).mean() >= ce.success.mean()
    assert tgt.success.mean() > 0.3


def test_worst_case_needs_epsilons(digits) -> None:
    model, x, y = digits
    with pytest.raises(UsageError, match="epsilon"):
        worst_case(model, x, y, epsilons=[])
