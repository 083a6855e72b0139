"""Membership inference: scores, their ROC metrics (AUC, TPR at low FPR), and the global-threshold
attacks of Yeom et al. 2018 (loss, confidence) plus the label-only gap attack."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from bastion.attacks.oracle import LabelOnlyError, Oracle, check_features
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError
from bastion.core.model import Model

LOW_FPRS = (0.001, 0.01)
THRESHOLD_ATTACKS = ("loss", "confidence", "gap")


@dataclass(frozen=True)
class MembershipResult:
    """One attack's membership scores (higher = more likely a member) and how well they separate.

    `tpr_at_fpr` maps a false-positive rate to the best true-positive rate at or below it;
    with n non-members the smallest measurable FPR is 1/n (`min_fpr`).
    """

    attack: str
    scores: np.ndarray
    is_member: np.ndarray
    auc: float
    tpr_at_fpr: dict[float, float]
    fpr: np.ndarray
    tpr: np.ndarray
    queries: int
    label_only: bool = False

    @property
    def min_fpr(self) -> float:
        return 1.0 / max(1, int((~self.is_member).sum()))


def evaluate(
    attack: str, scores: np.ndarray, is_member: np.ndarray, queries: int, label_only: bool = False
) -> MembershipResult:
    """ROC, AUC and TPR at each of LOW_FPRS for membership `scores`."""
    from sklearn.metrics import roc_auc_score, roc_curve

    members = np.asarray(is_member, dtype=bool)
    if members.all() or not members.any():
        raise DataError(
            "membership evaluation needs both members and non-members",
            fix="give training rows (members) and held-out rows (non-members)",
        )
    s = np.nan_to_num(
        np.asarray(scores, dtype=np.float64), nan=-np.inf, posinf=1e300, neginf=-1e300
    )
    fpr, tpr, _ = roc_curve(members, s)
    at = {f: float(tpr[fpr <= f].max(initial=0.0)) for f in LOW_FPRS}
    return MembershipResult(
        attack, s, members, float(roc_auc_score(members, s)), at, fpr, tpr, queries, label_only
    )


def true_class_log_odds(probs: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """phi = log p_y - log(sum of the other classes), stable even when p_y rounds to 1."""
    p = np.asarray(probs, dtype=np.float64)
    true = np.eye(p.shape[1], dtype=bool)[labels]
    p_y = p[true]
    others = np.where(true, 0.0, p).sum(axis=1)
    return np.log(np.clip(p_y, 1e-30, None)) - np.log(np.clip(others, 1e-30, None))


def membership_targets(members: Dataset, nonmembers: Dataset) -> Dataset:
    """One data set of members followed by non-members (labels required)."""
    if len(members) == 0 or len(nonmembers) == 0:
        raise DataError(
            "membership inference needs both members and non-members",
            fix="give the model's training rows and held-out rows",
        )
    if members.x.shape[1:] != nonmembers.x.shape[1:]:
        raise DataError(
            f"members have feature shape {members.x.shape[1:]}, non-members "
            f"{nonmembers.x.shape[1:]}",
            fix="use rows from the same feature space",
        )
    return Dataset(
        np.concatenate([members.x, nonmembers.x]).astype(np.float32),
        np.concatenate([members.labels, nonmembers.labels]),
    )


def query_targets(model: Model, targets: Dataset) -> tuple[np.ndarray, bool]:
    """The model's outputs on every target row, and whether the API returns only labels."""
    oracle = Oracle(model)
    probs = oracle.query(check_features(model, targets.x, "membership targets"))
    return probs, bool(oracle.label_only)


def threshold_attack(
    model: Model,
    members: Dataset,
    nonmembers: Dataset,
    *,
    kind: str = "loss",
    fallback: bool = True,
) -> MembershipResult:
    """Yeom et al.: one global threshold on the loss (`loss`) or top-1 confidence (`confidence`),
    or, label-only, on whether the model classifies the row correctly (`gap`).

    A label-only API makes the score-based kinds meaningless: with `fallback` they become `gap`,
    otherwise a LabelOnlyError explains.
    """
    if kind not in THRESHOLD_ATTACKS:
        raise DataError(
            f"unknown threshold attack {kind!r}", fix=f"choose from: {', '.join(THRESHOLD_ATTACKS)}"
        )
    targets = membership_targets(members, nonmembers)
    is_member = np.arange(len(targets)) < len(members)
    probs, label_only = query_targets(model, targets)
    if label_only and kind != "gap":
        if not fallback:
            raise LabelOnlyError(
                f"the {kind} attack needs probabilities but this model returns only labels",
                fix="use kind='gap' (label-only) or an API that returns scores",
            )
        kind = "gap"
    labels = targets.labels
    if kind == "gap":
        scores = (probs.argmax(axis=1) == labels).astype(np.float64)
    elif kind == "confidence":
        scores = probs.max(axis=1)
    else:
        scores = np.log(np.clip(probs[np.arange(len(labels)), labels], 1e-300, None))
    return evaluate(kind, scores, is_member, len(targets), label_only)
