"""Property: no attack ever returns an example outside the declared bounds or its epsilon ball."""

from __future__ import annotations

import numpy as np
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bastion.attacks.evasion import apgd, fgsm, pgd
from bastion.attacks.evasion.cw import carlini_wagner_l2
from bastion.attacks.evasion.hopskipjump import hop_skip_jump
from bastion.attacks.evasion.square import square_attack
from bastion.attacks.evasion.worstcase import Suite, worst_case
from bastion.core.adapters.torch import TorchModel

FEATURES = 6


def _setup(seed: int, n_classes: int, width: float):
    """A random MLP, per-feature bounds, and inputs inside them."""
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    module = torch.nn.Sequential(
        torch.nn.Linear(FEATURES, 8), torch.nn.ReLU(), torch.nn.Linear(8, n_classes)
    )
    lo = rng.uniform(-2, 0, FEATURES).astype(np.float32)
    hi = (lo + rng.uniform(0.1, width, FEATURES)).astype(np.float32)
    x = (lo + rng.uniform(0, 1, (12, FEATURES)) * (hi - lo)).astype(np.float32)
    model = TorchModel(module, input_shape=(FEATURES,), n_classes=n_classes)
    y = rng.integers(0, n_classes, 12)
    return model, x, y, (lo, hi)


def _inside(x_adv, x, bounds, eps, norm) -> None:
    lo, hi = bounds
    assert np.all(x_adv >= lo - 1e-5) and np.all(x_adv <= hi + 1e-5)
    delta = (x_adv - x).reshape(len(x), -1)
    size = np.abs(delta).max(axis=1) if norm == "linf" else np.linalg.norm(delta, axis=1)
    if eps is not None:
        assert np.all(size <= eps * (1 + 1e-4) + 1e-5)


@settings(max_examples=12, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    seed=st.integers(0, 10_000),
    n_classes=st.integers(4, 5),
    width=st.floats(0.2, 3.0),
    eps_frac=st.floats(0.01, 1.0),
    norm=st.sampled_from(["linf", "l2"]),
)
def test_every_attack_respects_bounds_and_ball(seed, n_classes, width, eps_frac, norm) -> None:
    model, x, y, bounds = _setup(seed, n_classes, width)
    eps = eps_frac * 0.1
    for result in (
        fgsm(model, x, y, epsilon=eps, norm=norm, bounds=bounds),
        pgd(model, x, y, epsilon=eps, norm=norm, steps=5, restarts=2, bounds=bounds, seed=seed),
        apgd(model, x, y, epsilon=eps, norm=norm, n_iter=10, bounds=bounds, seed=seed),
        apgd(
            model,
            x,
            y,
            epsilon=eps,
            norm=norm,
            loss="dlr-targeted",
            n_iter=10,
            n_targets=2,
            bounds=bounds,
        ),
        square_attack(model, x, y, epsilon=eps, norm=norm, n_queries=20, bounds=bounds, seed=seed),
    ):
        _inside(result.x_adv, x, bounds, eps, norm)
    wc = worst_case(
        model,
        x,
        y,
        epsilons=[eps / 2, eps],
        norm=norm,
        bounds=bounds,
        suite=Suite(pgd_steps=3, apgd_iter=5, apgd_targets=1, square_queries=5),
        seed=seed,
    )
    for e, adv in zip(wc.epsilons, wc.x_adv, strict=True):
        _inside(adv, x, bounds, e, norm)
    assert wc.robust_accuracy == sorted(wc.robust_accuracy, reverse=True)
    _inside(
        carlini_wagner_l2(model, x, y, steps=5, search_steps=2, bounds=bounds).x_adv,
        x,
        bounds,
        None,
        norm,
    )
    _inside(
        hop_skip_jump(model, x, y, iterations=2, init_evals=5, max_evals=10, bounds=bounds).x_adv,
        x,
        bounds,
        None,
        norm,
    )
