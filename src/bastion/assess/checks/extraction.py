"""`extraction`: how cheaply the prediction API lets someone clone the model."""

from __future__ import annotations

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.core.errors import UsageError
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import Model, predict_labels

RECOMMENDATION = (
    "Expose less per query and fewer queries: return rounded scores or only the top-1 label "
    "(bastion serve output defences: rounding / label-only), rate-limit each client and enable the "
    "gateway's extraction detector; watermark the model (bastion watermark) to prove a clone's "
    "origin."
)
FIDELITY_LEVELS = [(0.5, Severity.LOW), (0.75, Severity.MEDIUM), (0.9, Severity.HIGH)]
MIN_ROWS = 20


class ExtractionCheck:
    """Equation-solving (linear models) and learning-based cloning under a query budget."""

    name = "extraction"
    title = "Model extraction"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        return data.test.y is not None and len(data.test) >= MIN_ROWS

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        from bastion.attacks.clone import CloneSettings, one_torch_thread
        from bastion.attacks.extraction import STRATEGIES, equation_solving, extract

        order = np.random.default_rng(seed).permutation(len(data.test))
        attacker = data.test.subset(np.sort(order[: len(order) // 2]))
        evaluation = data.test.subset(np.sort(order[len(order) // 2 :]))
        # The assessor's reference, read once: the attacks' own queries stay within the budget.
        victim_labels = predict_labels(model, evaluation.x)
        findings: list[Finding] = []
        if len(model.input_shape) == 1:
            try:
                solved = equation_solving(
                    model, attacker.x, evaluation, seed=seed, evaluation_labels=victim_labels
                )
                findings.append(self._equation_solving(solved))
            except UsageError as exc:  # label-only or saturated outputs: nothing to solve
                findings.append(self._not_solvable(exc.message))
        queries = budget.pick(300, 500, 2000)
        settings = CloneSettings(max_steps=budget.pick(60, 120, 300))
        rounds = budget.pick(2, 3, 4)
        results = []
        with one_torch_thread():
            for i, strategy in enumerate(STRATEGIES):
                results.append(
                    extract(
                        model,
                        attacker.x,
                        evaluation,
                        strategy=strategy,
                        budget=queries,
                        seed=seed,
                        rounds=rounds,
                        settings=settings,
                        evaluation_labels=victim_labels,
                    )
                )
                progress((i + 1) / (len(STRATEGIES) + 1))
            best = max(results, key=_agreement)
            label_only = extract(
                model,
                attacker.x,
                evaluation,
                strategy=best.method,
                budget=queries,
                seed=seed,
                rounds=rounds,
                settings=settings,
                label_only=True,
                evaluation_labels=victim_labels,
            )
        progress(1.0)
        best_fidelity = _agreement(best)
        findings.append(
            Finding(
                id="extraction.learning",
                check=self.name,
                title=f"A clone agrees with the model on {best_fidelity:.1%} of held-out inputs "
                f"after "
                f"{best.queries} queries ({best.method})",
                severity=severity_from_thresholds(
                    best_fidelity, FIDELITY_LEVELS, higher_is_worse=True
                ),
                metric="clone_fidelity",
                value=best_fidelity,
                threshold=0.9,
                evidence={
                    "query_budget": queries,
                    "strategies": {
                        r.method: {
                            "fidelity": r.fidelity,
                            "clone_accuracy": r.accuracy,
                            "queries": r.queries,
                            "curve": [list(p) for p in r.curve],
                        }
                        for r in results
                    },
                    "label_only": {
                        "strategy": label_only.method,
                        "fidelity": label_only.fidelity,
                        "queries": label_only.queries,
                    },
                    "victim_accuracy": best.victim_accuracy,
                    "n_attacker_rows": len(attacker),
                    "n_evaluation_rows": len(evaluation),
                },
                recommendation=RECOMMENDATION,
                plots=(self._curve_plot(results, label_only),),
                headline=True,
            )
        )
        return findings

    def _equation_solving(self, result: object) -> Finding:
        from bastion.attacks.extraction import ExtractionResult

        assert isinstance(result, ExtractionResult)
        agreement = _agreement(result)
        exact = agreement >= 0.99
        return Finding(
            id="extraction.equation_solving",
            check=self.name,
            title=f"Solving {result.queries} equations gives a linear clone with "
            f"{agreement:.1%} fidelity",
            severity=Severity.CRITICAL if exact else Severity.INFO,
            metric="equation_solving_fidelity",
            value=agreement,
            threshold=0.99,
            evidence={
                "queries": result.queries,
                "clone_accuracy": result.accuracy,
                "victim_accuracy": result.victim_accuracy,
                "meaning": "the model is (multinomial) logistic regression in its raw inputs"
                if exact
                else "the model is not linear in its inputs; equation solving does not apply",
            },
            recommendation=(
                RECOMMENDATION + " Exact scores of a linear model reveal its weights: return "
                "labels only."
            )
            if exact
            else "",
        )

    def _not_solvable(self, reason: str) -> Finding:
        return Finding(
            id="extraction.equation_solving",
            check=self.name,
            title="Equation solving does not apply to this API",
            severity=Severity.INFO,
            metric="equation_solving_fidelity",
            value=0.0,
            threshold=0.99,
            evidence={"reason": reason},
        )

    @staticmethod
    def _curve_plot(results: list, label_only: object) -> Plot:
        fig, ax = new_figure()
        for r in results:
            q, f = zip(*r.curve, strict=True)
            ax.plot(q, f, marker="o", label=r.method)
        q, f = zip(*label_only.curve, strict=True)  # type: ignore[attr-defined]
        ax.plot(q, f, marker="x", linestyle="--", label=f"{label_only.method} (label-only)")  # type: ignore[attr-defined]
        ax.set_xlabel("victim queries")
        ax.set_ylabel("clone fidelity (agreement)")
        ax.set_ylim(0, 1.02)
        ax.legend(loc="lower right")
        return to_plot(fig, "Clone fidelity vs queries")


def _agreement(result: object) -> float:
    """The fidelity of a result that was run with an evaluation set."""
    value = getattr(result, "fidelity", None)
    assert value is not None, "extraction ran without an evaluation set"
    return float(value)


CHECK = ExtractionCheck()
