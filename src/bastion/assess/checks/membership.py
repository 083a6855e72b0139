"""`membership`: can an API caller tell whether a record was in the training data?"""

from __future__ import annotations

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import Model

RECOMMENDATION = (
    "Train with differential privacy (bastion harden dp) to bound what any record can leak; reduce "
    "overfitting (regularisation, early stopping, more data); at the gateway return only the top-1 "
    "label or rounded scores (bastion serve output defences) and rate-limit each client."
)
# TPR at 1% FPR: random guessing gives 0.01.
TPR_LEVELS = [(0.02, Severity.LOW), (0.05, Severity.MEDIUM), (0.15, Severity.HIGH)]
# Online LiRA needs several IN models per record (Carlini et al. 2022); with fewer shadows
# the offline variant is the stronger one. Which LiRA decides severity is fixed by this rule
# before any score is seen: picking the best of several attacks on the evaluation labels
# would bias the figure upward.
ONLINE_MIN_SHADOWS = 16


def primary_lira(n_shadow: int) -> str:
    """The pre-registered attack whose TPR sets the severity, given the shadow count."""
    return "lira-online-fixed" if n_shadow >= ONLINE_MIN_SHADOWS else "lira-offline-fixed"


def _summary(r: object) -> dict[str, float]:
    from bastion.attacks.membership import MembershipResult

    assert isinstance(r, MembershipResult)
    return {
        "auc": r.auc,
        "tpr_at_0.1%_fpr": r.tpr_at_fpr[0.001],
        "tpr_at_1%_fpr": r.tpr_at_fpr[0.01],
    }


class MembershipCheck:
    """Global loss threshold (Yeom), and with a trainer: LiRA, RMIA and Shokri shadow models.
    Severity comes from one pre-registered attack (`primary_lira`); the rest are evidence."""

    name = "membership"
    title = "Membership inference"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        return data.train is not None and data.train.y is not None and data.test.y is not None

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        from bastion.attacks import membership_lira as lira
        from bastion.attacks.membership import membership_targets, query_targets, threshold_attack
        from bastion.attacks.membership_shadow import train_shadows

        assert data.train is not None
        members = data.train
        threshold = threshold_attack(model, members, data.test)
        results = [threshold]
        primary_name = threshold.attack  # the only attack when shadow models cannot run
        note = ""
        if threshold.label_only:
            note = (
                "the model returns only labels: shadow-model attacks need scores, "
                "so only the gap attack ran"
            )
        elif data.trainer is None:
            note = (
                "no training function is known: shadow-model attacks (LiRA, RMIA, Shokri) "
                "were skipped"
            )
        else:
            n_shadow = budget.pick(4, 4, 16)
            pool = membership_targets(members, data.test)
            is_member = np.arange(len(pool)) < len(members)
            keep_fraction = float(np.clip(len(members) / len(pool), 0.25, 0.5))
            shadows = train_shadows(
                data.trainer,
                pool,
                n_shadow=n_shadow,
                keep_fraction=keep_fraction,
                seed=seed,
                on_done=lambda k: progress(0.9 * k / n_shadow),
            )
            probs, _ = query_targets(model, pool)
            labels = pool.labels
            primary_name = primary_lira(n_shadow)
            results += [
                lira.lira(
                    probs,
                    labels,
                    shadows,
                    is_member,
                    online=True,
                    fixed_variance=True,
                    queries=len(pool),
                ),
                lira.lira(
                    probs,
                    labels,
                    shadows,
                    is_member,
                    online=False,
                    fixed_variance=True,
                    queries=len(pool),
                ),
                lira.rmia(probs, labels, shadows, is_member, queries=len(pool)),
                lira.shokri(probs, labels, shadows, is_member, seed=seed, queries=len(pool)),
            ]
        progress(1.0)
        primary = next(r for r in results if r.attack == primary_name)
        best = max(results, key=lambda r: (r.tpr_at_fpr[0.01], r.auc))
        tpr = primary.tpr_at_fpr[0.01]
        evidence = {
            "attacks": {r.attack: _summary(r) for r in results},
            "primary_attack": primary.attack,
            "best_attack_on_evaluation_labels": best.attack,
            "note_on_best": "chosen after seeing the labels, so biased upward: evidence only",
            "n_members": int(primary.is_member.sum()),
            "n_non_members": int((~primary.is_member).sum()),
            "smallest_measurable_fpr": primary.min_fpr,
        }
        if note:
            evidence["note"] = note
        return [
            Finding(
                id="membership.tpr_at_low_fpr",
                check=self.name,
                title=f"{primary.attack}: {tpr:.1%} of training records identified at 1% false "
                f"positives "
                f"(AUC {primary.auc:.3f})",
                severity=severity_from_thresholds(tpr, TPR_LEVELS, higher_is_worse=True),
                metric="tpr_at_1pct_fpr",
                value=tpr,
                threshold=0.05,
                evidence=evidence,
                recommendation=RECOMMENDATION,
                plots=(self._roc_plot(results),),
                headline=True,
            )
        ]

    @staticmethod
    def _roc_plot(results: list) -> Plot:
        fig, ax = new_figure()
        floor = 1e-4
        for r in results:
            ax.plot(
                np.maximum(r.fpr, floor),
                np.maximum(r.tpr, floor),
                label=f"{r.attack} (AUC {r.auc:.2f})",
            )
        ax.plot([floor, 1], [floor, 1], "--", color="#888", label="chance")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlim(floor, 1)
        ax.set_ylim(floor, 1)
        ax.set_xlabel("false-positive rate")
        ax.set_ylabel("true-positive rate")
        ax.legend(loc="lower right", fontsize="small")
        return to_plot(fig, "Membership ROC (log-log)")


CHECK = MembershipCheck()
