"""`poisoning`: how easily a backdoor is planted in training data, and whether sanitisers catch it.

Trains models on BadNets-poisoned copies of the training data at 1%, 5% and 10% poison
(a fast surrogate at quick/standard budgets, the model's own trainer at thorough), then
runs the three sanitisers on the 5% set.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.core.dataset import Dataset
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import Model

if TYPE_CHECKING:
    from bastion.attacks.poisoning import PoisoningResult

RATES = (0.01, 0.05, 0.10)
SANITISED_RATE = 0.05
MAX_CLEAN_REMOVED = 0.05


def _trigger(data: Dataset) -> object:
    from bastion.attacks.poisoning import feature_trigger, patch_trigger

    shape = tuple(data.x.shape[1:])
    if len(shape) in (2, 3):
        return patch_trigger(shape, size=max(1, min(3, min(shape[-2:]) // 2)))
    high = data.x.max(axis=0)
    return feature_trigger(shape, {i: float(high[i]) for i in range(min(3, shape[0]))})


class PoisoningCheck:
    """Backdoor susceptibility at three poison rates, and sanitiser recall."""

    name = "poisoning"
    title = "Training-data poisoning"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        train = data.train
        return train is not None and train.y is not None and data.trainer is not None

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        from bastion.attacks.poisoning import Trigger, badnets, evaluate
        from bastion.attacks.poisoning.surrogate import train_surrogate
        from bastion.defenses.sanitize import (
            activation_clustering,
            knn_label_consistency,
            spectral_signatures,
        )

        assert data.train is not None and data.trainer is not None
        train = data.train.sample(budget.pick(600, 1500, 100_000), seed)
        epochs = budget.pick(10, 20, 30)
        n_classes = model.n_classes
        target = int(np.bincount(train.labels, minlength=n_classes).argmin())
        trigger = _trigger(train)
        assert isinstance(trigger, Trigger)

        def surrogate(ds: Dataset, s: int) -> Model:
            return train_surrogate(ds, s, n_classes=n_classes, epochs=epochs)

        trainer = data.trainer if budget is Budget.THOROUGH else surrogate
        rows: list[PoisoningResult] = []
        sanitised = None
        for i, rate in enumerate(RATES):
            poisoned = badnets(train, rate, target, trigger, n_classes, seed)
            result = evaluate(poisoned, trainer, data.test, seed)
            rows.append(result)
            if rate == SANITISED_RATE:
                sanitised = (poisoned, result.model)
            progress((i + 1) / (len(RATES) + 1))
        assert sanitised is not None
        poisoned, poisoned_model = sanitised
        if not hasattr(poisoned_model, "module"):
            poisoned_model = surrogate(poisoned.dataset, seed)
        mask = poisoned.is_poison
        results = [
            spectral_signatures(poisoned_model, poisoned.dataset, expected_rate=0.1),
            activation_clustering(poisoned_model, poisoned.dataset, seed=seed),
            knn_label_consistency(poisoned.dataset),
        ]
        scored = {
            r.method: {"recall": r.recall(mask), "clean_removed": r.clean_removed(mask)}
            for r in results
        }
        progress(1.0)
        return [
            self._susceptibility(rows, target, budget),
            self._sanitisation(scored, len(poisoned.poison_index)),
        ]

    def _susceptibility(self, rows: list[PoisoningResult], target: int, budget: Budget) -> Finding:
        at5 = next(r for r in rows if r.rate == SANITISED_RATE)
        per_rate = {
            f"{r.rate:.0%}": {
                "attack_success": r.attack_success,
                "clean_accuracy": r.clean_accuracy,
                "n_poison": r.n_poison,
            }
            for r in rows
        }
        return Finding(
            id="poisoning.backdoor",
            check=self.name,
            title=(
                f"A BadNets backdoor in 5% of the training data succeeds on "
                f"{at5.attack_success:.0%} of inputs"
            ),
            severity=severity_from_thresholds(
                at5.attack_success,
                [(0.2, Severity.LOW), (0.5, Severity.MEDIUM), (0.9, Severity.HIGH)],
                higher_is_worse=True,
            ),
            metric="backdoor_success_at_5pct",
            value=at5.attack_success,
            threshold=0.5,
            evidence={
                "per_rate": per_rate,
                "target_class": target,
                "trainer": "model trainer" if budget is Budget.THOROUGH else "surrogate MLP",
            },
            recommendation=(
                "Control who can add training data, keep provenance for every row, and run "
                "`bastion sanitize` on each new training set before (re)training."
            ),
            plots=(self._rate_plot(rows),),
            headline=True,
        )

    def _sanitisation(self, scored: dict[str, dict[str, float]], n_poison: int) -> Finding:
        usable = {m: s for m, s in scored.items() if s["clean_removed"] <= MAX_CLEAN_REMOVED}
        best = max(usable or scored, key=lambda m: (usable or scored)[m]["recall"])
        recall = scored[best]["recall"]
        return Finding(
            id="poisoning.sanitisation",
            check=self.name,
            title=f"Best sanitiser ({best}) finds {recall:.0%} of {n_poison} poisoned rows",
            severity=severity_from_thresholds(
                recall, [(0.9, Severity.INFO), (0.5, Severity.MEDIUM)], higher_is_worse=False
            )
            if recall < 0.9
            else Severity.INFO,
            metric="sanitiser_recall",
            value=recall,
            threshold=0.9,
            evidence={"methods": scored, "best": best, "max_clean_removed": MAX_CLEAN_REMOVED},
            recommendation=(
                f"`bastion sanitize DATA --model MODEL --method {best}` removes these rows; "
                "retrain on the cleaned set."
            ),
            plots=(self._sanitiser_plot(scored),),
        )

    @staticmethod
    def _rate_plot(rows: list[PoisoningResult]) -> Plot:
        fig, ax = new_figure()
        labels = [f"{r.rate:.0%}" for r in rows]
        pos = np.arange(len(rows))
        ax.bar(
            pos - 0.2,
            [r.attack_success for r in rows],
            0.4,
            label="attack success",
            color="#d8573b",
        )
        ax.bar(
            pos + 0.2,
            [r.clean_accuracy for r in rows],
            0.4,
            label="clean accuracy",
            color="#3b6fd8",
        )
        ax.set_xticks(pos, labels)
        ax.set_ylim(0, 1.05)
        ax.set_xlabel("poisoned fraction of the training data")
        ax.legend(loc="lower right")
        return to_plot(fig, "Backdoor success vs poison rate")

    @staticmethod
    def _sanitiser_plot(scored: dict[str, dict[str, float]]) -> Plot:
        fig, ax = new_figure()
        names = list(scored)
        pos = np.arange(len(names))
        ax.bar(
            pos - 0.2,
            [scored[n]["recall"] for n in names],
            0.4,
            label="poison found",
            color="#3b6fd8",
        )
        ax.bar(
            pos + 0.2,
            [scored[n]["clean_removed"] for n in names],
            0.4,
            label="clean removed",
            color="#888",
        )
        ax.set_xticks(pos, names)
        ax.set_ylim(0, 1.05)
        ax.legend()
        return to_plot(fig, "Sanitisers on the 5% poisoned set")


CHECK = PoisoningCheck()
