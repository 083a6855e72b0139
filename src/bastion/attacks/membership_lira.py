"""Shadow-model membership attacks: Shokri et al. 2017, LiRA (Carlini et al. 2022, online, offline
and fixed-variance) and RMIA (Zarifzadeh et al. 2024), all scored from one set of shadow models."""

from __future__ import annotations

import numpy as np

from bastion.attacks.membership import MembershipResult, evaluate, true_class_log_odds
from bastion.attacks.membership_shadow import ShadowSet
from bastion.core.errors import DataError

SHADOW_ATTACKS = (
    "lira-online",
    "lira-offline",
    "lira-online-fixed",
    "lira-offline-fixed",
    "rmia",
    "shokri",
)


def _gaussian_logpdf(x: np.ndarray, mu: np.ndarray, sigma: np.ndarray) -> np.ndarray:
    return -0.5 * ((x - mu) / sigma) ** 2 - np.log(sigma)


def _masked_stats(
    values: np.ndarray, mask: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-row mean and std of `values` (K, N) over the shadows where `mask` is set, and counts."""
    count = mask.sum(axis=0)
    mean = np.where(mask, values, 0.0).sum(axis=0) / np.maximum(count, 1)
    var = np.where(mask, (values - mean) ** 2, 0.0).sum(axis=0) / np.maximum(count - 1, 1)
    return mean, np.sqrt(var), count


def lira(
    target_probs: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    is_member: np.ndarray,
    *,
    online: bool = True,
    fixed_variance: bool = False,
    queries: int = 0,
) -> MembershipResult:
    """Likelihood-ratio test on phi = log-odds of the true class: Gaussians fitted per row to the
    shadows that trained on it (IN) and those that did not (OUT). Offline uses OUT only, as a
    one-sided test; fixed variance pools one variance over all rows (better with few shadows)."""
    phi = true_class_log_odds(target_probs, labels)
    shadow_phi = np.stack([true_class_log_odds(p, labels) for p in shadows.probs])
    mu_out, sd_out, n_out = _masked_stats(shadow_phi, ~shadows.keep)
    mu_in, sd_in, n_in = _masked_stats(shadow_phi, shadows.keep)
    if (n_out == 0).any() or (online and (n_in == 0).any()):
        raise DataError(
            "some rows have no IN or OUT shadow model", fix="raise the number of shadow models"
        )
    if fixed_variance or (n_out < 2).any() or (online and (n_in < 2).any()):
        sd_out = np.full_like(sd_out, np.std(shadow_phi[~shadows.keep]))
        sd_in = np.full_like(sd_in, np.std(shadow_phi[shadows.keep]))
        fixed_variance = True
    sd_out, sd_in = np.maximum(sd_out, 1e-3), np.maximum(sd_in, 1e-3)
    if online:
        scores = _gaussian_logpdf(phi, mu_in, sd_in) - _gaussian_logpdf(phi, mu_out, sd_out)
    else:
        scores = (phi - mu_out) / sd_out  # monotone in the one-sided p-value
    name = f"lira-{'online' if online else 'offline'}{'-fixed' if fixed_variance else ''}"
    return evaluate(name, scores, is_member, queries)


def rmia(
    target_probs: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    is_member: np.ndarray,
    *,
    population: np.ndarray | None = None,
    gamma: float = 1.0,
    offline_a: float | None = None,
    queries: int = 0,
) -> MembershipResult:
    """RMIA: the likelihood ratio p(x|target) / p(x) compared with the same ratio on population
    rows z; the score is the fraction of z that x dominates by more than `gamma`.

    p(x) averages every reference model (online); with `offline_a` only OUT models are used and
    corrected as (1 + a) / 2 * mean_out + (1 - a) / 2, as in the paper's offline variant.
    `population` indexes the rows used as z (default: every row).
    """
    idx = np.arange(len(labels))
    p_target = np.asarray(target_probs, dtype=np.float64)[idx, labels]
    p_ref = shadows.probs[:, idx, labels].astype(np.float64)
    if offline_a is None:
        p_x = p_ref.mean(axis=0)
    else:
        out = ~shadows.keep
        mean_out = np.where(out, p_ref, 0.0).sum(axis=0) / np.maximum(out.sum(axis=0), 1)
        p_x = 0.5 * ((1 + offline_a) * mean_out + (1 - offline_a))
    ratio = p_target / np.maximum(p_x, 1e-30)
    z = np.sort(ratio[idx if population is None else population])
    scores = np.searchsorted(z, ratio / gamma, side="left") / len(z)
    return evaluate("rmia" if offline_a is None else "rmia-offline", scores, is_member, queries)


def attack_features(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Shokri attack features: true-class log-odds, top-3 scores, entropy, correctness."""
    p = np.clip(np.asarray(probs, dtype=np.float64), 1e-30, 1.0)
    top = np.sort(p, axis=1)[:, ::-1][:, :3]
    if top.shape[1] < 3:
        top = np.pad(top, ((0, 0), (0, 3 - top.shape[1])))
    entropy = -(p * np.log(p)).sum(axis=1)
    correct = (p.argmax(axis=1) == labels).astype(np.float64)
    return np.column_stack([true_class_log_odds(probs, labels), top, entropy, correct])


def shokri(
    target_probs: np.ndarray,
    labels: np.ndarray,
    shadows: ShadowSet,
    is_member: np.ndarray,
    *,
    seed: int,
    queries: int = 0,
) -> MembershipResult:
    """Shokri et al.: an attack classifier learns IN vs OUT from the shadow models' outputs."""
    from sklearn.ensemble import HistGradientBoostingClassifier

    feats = np.concatenate([attack_features(p, labels) for p in shadows.probs])
    attack = HistGradientBoostingClassifier(max_iter=100, random_state=seed)
    attack.fit(feats, shadows.keep.reshape(-1))
    scores = attack.predict_proba(attack_features(target_probs, labels))[:, 1]
    return evaluate("shokri", scores, is_member, queries)
