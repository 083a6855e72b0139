"""`inversion`: what outputs reveal about the classes (images) or hidden attributes (tables)."""

from __future__ import annotations

from typing import cast

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import DifferentiableModel, Model, is_differentiable

IMAGE_RECOMMENDATION = (
    "Class representatives can be rebuilt from gradients: serve the model as a black box behind "
    "the gateway, return only the top-1 label or rounded scores (bastion serve output defences), "
    "and train with differential privacy (bastion harden dp) where single training records must "
    "not show through."
)
TABULAR_RECOMMENDATION = (
    "Exact scores let a caller who knows the rest of a record solve for a hidden attribute: return "
    "only the top-1 label or rounded scores (bastion serve output defences), rate-limit each "
    "client, and "
    "train with differential privacy (bastion harden dp)."
)
ADVANTAGE_LEVELS = [(0.05, Severity.LOW), (0.2, Severity.MEDIUM), (0.5, Severity.HIGH)]
IDENTIFICATION_LEVELS = [(0.5, Severity.LOW), (0.8, Severity.MEDIUM)]


class InversionCheck:
    """MI-Face reconstructions for white-box image models; attribute inference for tables."""

    name = "inversion"
    title = "Model inversion"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        if data.test.y is None:
            return False
        image = len(model.input_shape) == 3 and is_differentiable(model)
        return image or len(model.input_shape) == 1

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        if len(model.input_shape) == 3:
            return [self._images(model, data, budget, seed, progress)]
        return [self._tabular(model, data, budget, seed, progress)]

    def _images(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> Finding:
        from bastion.attacks.clone import one_torch_thread
        from bastion.attacks.inversion import mi_face

        reference = data.train if data.train is not None else data.test
        with one_torch_thread():
            result = mi_face(
                cast(DifferentiableModel, model),
                steps=budget.pick(60, 150, 400),
                start=data.test.x.mean(axis=0),
                reference=reference,
                seed=seed,
            )
        progress(1.0)
        ident = float(result.identification or 0.0)
        return Finding(
            id="inversion.class_reconstruction",
            check=self.name,
            title=f"Gradient reconstructions match their own class mean for {ident:.0%} of classes",
            severity=severity_from_thresholds(ident, IDENTIFICATION_LEVELS, higher_is_worse=True),
            metric="class_identification",
            value=ident,
            threshold=0.5,
            evidence={
                "chance": 1.0 / model.n_classes,
                "gradient_steps": result.gradient_steps,
                "mean_confidence": float(result.confidence.mean()),
                "start": "mean of unlabelled held-out inputs",
            },
            recommendation=IMAGE_RECOMMENDATION,
            plots=(self._image_plot(result.reconstructions, result.class_means),),
            headline=True,
        )

    def _tabular(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> Finding:
        from bastion.attacks.inversion import attribute_inference
        from bastion.attacks.oracle import LabelOnlyError

        records = (data.train if data.train is not None else data.test).sample(
            budget.pick(100, 200, 500), seed
        )
        n_features = model.input_shape[0]
        features = np.unique(
            np.linspace(0, n_features - 1, min(n_features, budget.pick(3, 6, 30))).astype(int)
        )
        results = []
        try:
            for i, f in enumerate(features):
                results.append(attribute_inference(model, records, int(f), population=data.test))
                progress((i + 1) / len(features))
        except LabelOnlyError:
            return Finding(
                id="inversion.attribute_inference",
                check=self.name,
                title="The model returns only labels: score-matching attribute inference does "
                "not apply",
                severity=Severity.INFO,
                metric="attribute_advantage",
                value=0.0,
                threshold=0.05,
                evidence={"label_only": True},
            )
        best = max(results, key=lambda r: r.advantage)
        return Finding(
            id="inversion.attribute_inference",
            check=self.name,
            title=f"A hidden '{best.feature_name}' is inferred {best.advantage:+.0%} better than "
            "a marginal guess",
            severity=severity_from_thresholds(
                best.advantage, ADVANTAGE_LEVELS, higher_is_worse=True
            ),
            metric="attribute_advantage",
            value=best.advantage,
            threshold=0.05,
            evidence={
                "records_from": "training data" if data.train is not None else "held-out data",
                "n_records": len(records),
                "bins": best.n_bins,
                "features": {
                    r.feature_name: {
                        "accuracy": r.accuracy,
                        "baseline": r.baseline_accuracy,
                        "advantage": r.advantage,
                        "queries": r.queries,
                    }
                    for r in results
                },
            },
            recommendation=TABULAR_RECOMMENDATION,
            plots=(self._attribute_plot(results),),
            headline=True,
        )

    @staticmethod
    def _image_plot(recon: np.ndarray, means: np.ndarray | None) -> Plot:
        import matplotlib

        matplotlib.use("Agg", force=False)
        from matplotlib.figure import Figure

        k = len(recon)
        rows = 2 if means is not None else 1
        fig = Figure(figsize=(min(1.0 * k, 12), 1.2 * rows + 0.3), layout="constrained")
        axes = fig.subplots(rows, k, squeeze=False)
        for c in range(k):
            axes[0][c].imshow(recon[c].mean(axis=0), cmap="gray")
            axes[0][c].set_title(str(c), fontsize=8)
            if means is not None:
                axes[1][c].imshow(np.nan_to_num(means[c]).mean(axis=0), cmap="gray")
        for ax in axes.flat:
            ax.set_xticks([])
            ax.set_yticks([])
        axes[0][0].set_ylabel("reconstructed", fontsize=7)
        if means is not None:
            axes[1][0].set_ylabel("class mean", fontsize=7)
        return to_plot(fig, "MI-Face reconstructions (top) beside class means (bottom)")

    @staticmethod
    def _attribute_plot(results: list) -> Plot:
        fig, ax = new_figure()
        names = [r.feature_name for r in results]
        pos = np.arange(len(results))
        ax.bar(pos - 0.2, [r.accuracy for r in results], 0.4, label="attack", color="#d8573b")
        ax.bar(
            pos + 0.2,
            [r.baseline_accuracy for r in results],
            0.4,
            label="marginal guess",
            color="#3b6fd8",
        )
        ax.set_xticks(pos, names, rotation=30, ha="right", fontsize=7)
        ax.set_ylabel("bin accuracy")
        ax.set_ylim(0, 1)
        ax.legend()
        return to_plot(fig, "Attribute inference vs baseline")


CHECK = InversionCheck()
