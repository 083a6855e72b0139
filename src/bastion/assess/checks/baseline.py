"""`baseline`: clean accuracy and calibration, the reference the attack checks compare against."""

from __future__ import annotations

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import Model

N_BINS = 10


def expected_calibration_error(
    probs: np.ndarray, labels: np.ndarray, n_bins: int = N_BINS
) -> float:
    """ECE: the confidence-weighted gap between confidence and accuracy over equal-width bins."""
    confidence = probs.max(axis=1)
    correct = probs.argmax(axis=1) == labels
    edges = np.linspace(0.0, 1.0, n_bins + 1)
    bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, n_bins - 1)
    ece = 0.0
    for b in range(n_bins):
        mask = bins == b
        if mask.any():
            ece += mask.mean() * abs(correct[mask].mean() - confidence[mask].mean())
    return float(ece)


class BaselineCheck:
    """Clean behaviour of the model on held-out data."""

    name = "baseline"
    title = "Baseline accuracy and calibration"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        return data.test.y is not None

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        labels = data.test.labels
        probs = model.predict_proba(data.test.x)
        progress(0.5)
        pred = probs.argmax(axis=1)
        accuracy = float((pred == labels).mean())
        names = list(data.test.class_names) or [str(c) for c in range(model.n_classes)]
        per_class = {
            names[c]: float((pred[labels == c] == c).mean())
            for c in range(model.n_classes)
            if (labels == c).any()
        }
        ece = expected_calibration_error(probs, labels)
        findings = [
            Finding(
                id="baseline.accuracy",
                check=self.name,
                title=f"Clean accuracy {accuracy:.1%} on {len(labels)} held-out examples",
                severity=severity_from_thresholds(
                    accuracy, [(0.8, Severity.LOW), (0.5, Severity.MEDIUM)], higher_is_worse=False
                ),
                metric="accuracy",
                value=accuracy,
                threshold=0.8,
                evidence={"per_class_accuracy": per_class, "n_examples": len(labels)},
                recommendation="Attack checks report robust figures against this clean accuracy.",
                plots=(self._per_class_plot(per_class),),
                headline=True,
            ),
            Finding(
                id="baseline.calibration",
                check=self.name,
                title=f"Expected calibration error {ece:.3f}",
                severity=severity_from_thresholds(ece, [(0.1, Severity.LOW)], higher_is_worse=True),
                metric="expected_calibration_error",
                value=ece,
                threshold=0.1,
                evidence={"bins": N_BINS, "mean_confidence": float(probs.max(axis=1).mean())},
                recommendation=(
                    "Over-confident outputs leak more to membership inference and extraction; "
                    "consider temperature scaling or returning rounded / top-k outputs "
                    "(bastion serve output defences)."
                ),
                plots=(
                    self._reliability_plot(probs, labels),
                    self._confidence_plot(probs, pred == labels),
                ),
            ),
        ]
        progress(1.0)
        return findings

    @staticmethod
    def _per_class_plot(per_class: dict[str, float]) -> Plot:
        fig, ax = new_figure()
        ax.bar(list(per_class), list(per_class.values()), color="#3b6fd8")
        ax.set_ylim(0, 1.0)
        ax.set_xlabel("class")
        ax.set_ylabel("accuracy")
        return to_plot(fig, "Per-class accuracy")

    @staticmethod
    def _reliability_plot(probs: np.ndarray, labels: np.ndarray) -> Plot:
        confidence = probs.max(axis=1)
        correct = probs.argmax(axis=1) == labels
        edges = np.linspace(0, 1, N_BINS + 1)
        bins = np.clip(np.digitize(confidence, edges[1:-1]), 0, N_BINS - 1)
        centers = (edges[:-1] + edges[1:]) / 2
        acc = [correct[bins == b].mean() if (bins == b).any() else np.nan for b in range(N_BINS)]
        fig, ax = new_figure()
        ax.plot([0, 1], [0, 1], "--", color="#888", label="perfect calibration")
        ax.bar(
            centers,
            acc,
            width=1 / N_BINS,
            edgecolor="#1d2330",
            color="#3b6fd8",
            alpha=0.8,
            label="accuracy",
        )
        ax.set_xlabel("confidence")
        ax.set_ylabel("accuracy")
        ax.legend(loc="upper left")
        return to_plot(fig, "Reliability diagram")

    @staticmethod
    def _confidence_plot(probs: np.ndarray, correct: np.ndarray) -> Plot:
        confidence = probs.max(axis=1)
        fig, ax = new_figure()
        bins = np.linspace(0, 1, 21)
        ax.hist(confidence[correct], bins=bins, alpha=0.75, label="correct", color="#3b6fd8")
        ax.hist(confidence[~correct], bins=bins, alpha=0.75, label="wrong", color="#d8573b")
        ax.set_xlabel("top-1 confidence")
        ax.set_ylabel("examples")
        ax.legend()
        return to_plot(fig, "Confidence histogram")


CHECK = BaselineCheck()
