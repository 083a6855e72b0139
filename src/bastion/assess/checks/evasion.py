"""`evasion`: worst-case robust accuracy under small input perturbations; cheapest flips for tables.

Image-like and other dense inputs: the worst case over a suite of attacks (cheap ones
first, the expensive ones only on survivors) at a grid of epsilons around the threat
model, which is 10% of the data's range in L-inf unless `[assess] evasion_epsilon` says
otherwise. Tabular inputs (one feature vector per row): the cheapest edit within each
feature's observed range that flips the model's decision.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Iterator

import numpy as np

from bastion.assess.check import AssessmentData, Budget, ProgressFn
from bastion.assess.plots import new_figure, to_plot
from bastion.attacks.evasion.tabular import TabularConstraints, TabularResult, cheapest_flip
from bastion.attacks.evasion.worstcase import Suite, WorstCaseResult, perturbation_norms, worst_case
from bastion.core.config import load_config
from bastion.core.dataset import Dataset
from bastion.core.errors import ConfigError
from bastion.core.finding import Finding, Plot, Severity, severity_from_thresholds
from bastion.core.model import Model

EPSILON_ENV = "BASTION_ASSESS__EVASION_EPSILON"
THREAT_FRACTION = 0.1
EPSILON_MULTIPLIERS = {
    "quick": (0.5, 1.0, 2.0),
    "standard": (0.5, 1.0, 2.0),
    "thorough": (0.25, 0.5, 1.0, 1.5, 2.0),
}
ROBUST_THRESHOLDS = [
    (0.85, Severity.LOW),
    (0.7, Severity.MEDIUM),
    (0.5, Severity.HIGH),
    (0.2, Severity.CRITICAL),
]
CHEAP_EDIT = 0.1  # an edit costing at most 10% of one feature's range counts as cheap
CHEAP_THRESHOLDS = [(0.01, Severity.LOW), (0.2, Severity.MEDIUM), (0.5, Severity.HIGH)]
GRID_EXAMPLES = 8
TABLE_ROWS = 10
SMALL_MODEL_PARAMETERS = 1_000_000


def data_width(model: Model, data: Dataset) -> float:
    """The width of the valid input range: the model's declared bounds, else the data's span."""
    if model.input_bounds is not None:
        lo, hi = model.input_bounds
        if math.isfinite(lo) and math.isfinite(hi) and hi > lo:
            return float(hi - lo)
    return float(np.max(data.x) - np.min(data.x)) or 1.0


def threat_epsilon(model: Model, data: Dataset) -> float:
    """The L-inf threat model: `[assess] evasion_epsilon`, else 10% of the input range."""
    eps = load_config().assess.evasion_epsilon
    if eps is None:
        return THREAT_FRACTION * data_width(model, data)
    if not math.isfinite(eps) or eps > data_width(model, data):
        raise ConfigError(
            f"evasion_epsilon={eps:g} is outside (0, {data_width(model, data):g}], the input range",
            fix="pick an epsilon inside the input range",
        )
    return eps


def is_tabular(model: Model) -> bool:
    return len(model.input_shape) == 1


@contextlib.contextmanager
def _small_model_threads(model: Model) -> Iterator[None]:
    """One torch thread while attacking a small model: its tiny batched ops gain nothing
    from intra-op threads, and on a busy machine the extra threads slow it down many-fold."""
    module = getattr(model, "module", None)
    if module is None or sum(p.numel() for p in module.parameters()) > SMALL_MODEL_PARAMETERS:
        yield
        return
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


class EvasionCheck:
    """How far inputs must move before the model's decision changes."""

    name = "evasion"
    title = "Evasion robustness"

    def applies_to(self, model: Model, data: AssessmentData) -> bool:
        return data.test.y is not None and len(data.test) > 0

    def run(
        self, model: Model, data: AssessmentData, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        if is_tabular(model):
            return self._tabular(model, data.test, budget, seed, progress)
        with _small_model_threads(model):
            return self._dense(model, data.test, budget, seed, progress)

    # dense inputs (images) ---------------------------------------------------------------

    def _dense(
        self, model: Model, test: Dataset, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        threat = threat_epsilon(model, test)
        width = data_width(model, test)
        sample = test.sample(budget.pick(100, 200, 360), seed)
        eps_grid = sorted({min(threat * m, width) for m in EPSILON_MULTIPLIERS[budget.value]})
        result = worst_case(
            model,
            sample.x,
            sample.labels,
            epsilons=eps_grid,
            suite=Suite.for_budget(budget.value),
            seed=seed,
            progress=lambda f: progress(0.9 * f),
        )
        at = result.epsilons.index(min(result.epsilons, key=lambda e: abs(e - threat)))
        robust = result.robust_accuracy[at]
        norms = perturbation_norms(result, sample.x, at)
        plots = [self._curve_plot(result, threat), self._norm_plot(norms, threat)]
        if len(model.input_shape) in (2, 3) and (
            len(model.input_shape) == 2 or model.input_shape[0] in (1, 3)
        ):
            plots.insert(1, self._grid_plot(model, sample, result, at))
        drop = result.clean_accuracy - robust
        findings = [
            Finding(
                id="evasion.robust_accuracy",
                check=self.name,
                title=(
                    f"Robust accuracy {robust:.1%} at L-inf epsilon {threat:.3g} "
                    f"(clean {result.clean_accuracy:.1%})"
                ),
                severity=severity_from_thresholds(robust, ROBUST_THRESHOLDS, higher_is_worse=False),
                metric="robust_accuracy",
                value=robust,
                threshold=ROBUST_THRESHOLDS[0][0],
                evidence={
                    **result.to_dict(),
                    "threat_epsilon": threat,
                    "accuracy_drop": drop,
                    "epsilon_source": "[assess] evasion_epsilon"
                    if load_config().assess.evasion_epsilon is not None
                    else "10% of the input range",
                },
                recommendation=(
                    "Harden with adversarial training "
                    "(`bastion harden adversarial MODEL --epsilon E`), and in production limit "
                    "queries and flag out-of-distribution inputs at the gateway."
                    if robust < ROBUST_THRESHOLDS[0][0]
                    else "Robust at this threat model; confirm with --budget thorough."
                ),
                plots=tuple(plots),
                headline=True,
            ),
            Finding(
                id="evasion.min_perturbation",
                check=self.name,
                title=f"Median smallest breaking epsilon {result.median_min_perturbation:.3g}",
                severity=Severity.INFO,
                metric="median_min_perturbation",
                value=result.median_min_perturbation,
                threshold=None,
                evidence={
                    "epsilons": result.epsilons,
                    "broken_at": {
                        f"{e:.4g}": int(np.sum(result.min_broken_epsilon == e))
                        for e in result.epsilons
                    },
                    "never_broken": int(np.isinf(result.min_broken_epsilon).sum()),
                    "misclassified_clean": int(np.sum(result.min_broken_epsilon == 0)),
                },
                recommendation="inf means most examples survived every epsilon tried.",
            ),
        ]
        progress(1.0)
        return findings

    @staticmethod
    def _curve_plot(result: WorstCaseResult, threat: float) -> Plot:
        fig, ax = new_figure()
        eps = [0.0, *result.epsilons]
        acc = [result.clean_accuracy, *result.robust_accuracy]
        ax.plot(eps, acc, "o-", color="#3b6fd8", label="worst case over the suite")
        ax.axvline(threat, linestyle="--", color="#d8573b", label=f"threat model ({threat:.3g})")
        ax.set_ylim(0, 1.02)
        ax.set_xlabel(f"epsilon ({result.norm})")
        ax.set_ylabel("robust accuracy")
        ax.legend(loc="upper right")
        return to_plot(fig, "Robustness curve")

    @staticmethod
    def _norm_plot(norms: np.ndarray, threat: float) -> Plot:
        fig, ax = new_figure()
        if len(norms):
            ax.hist(norms, bins=20, color="#3b6fd8")
        ax.axvline(threat, linestyle="--", color="#d8573b", label="threat epsilon")
        ax.set_xlabel("L-inf perturbation of the successful adversarial examples")
        ax.set_ylabel("examples")
        ax.legend()
        return to_plot(fig, "Perturbation-norm histogram")

    @staticmethod
    def _grid_plot(model: Model, sample: Dataset, result: WorstCaseResult, at: int) -> Plot:
        broken = np.flatnonzero(
            (result.min_broken_epsilon > 0) & (result.min_broken_epsilon <= result.epsilons[at])
        )
        pick = broken[:GRID_EXAMPLES]
        adv = result.x_adv[at][pick]
        pred_clean = model.predict_proba(sample.x[pick]).argmax(axis=1) if len(pick) else []
        pred_adv = model.predict_proba(adv).argmax(axis=1) if len(pick) else []
        names = list(sample.class_names) or [str(c) for c in range(model.n_classes)]
        lo, hi = model.input_bounds or (float(sample.x.min()), float(sample.x.max()))
        fig, _ = new_figure(width=1.3 * max(len(pick), 1), height=3.0)
        fig.clear()
        axes = fig.subplots(2, max(len(pick), 1), squeeze=False)
        for k in range(axes.shape[1]):
            for row in (0, 1):
                axes[row, k].axis("off")
            if k >= len(pick):
                continue
            for row, (img, label) in enumerate(
                ((sample.x[pick[k]], pred_clean[k]), (adv[k], pred_adv[k]))
            ):
                pic = np.moveaxis(img, 0, -1) if img.ndim == 3 else img
                axes[row, k].imshow(pic.squeeze(), cmap="gray_r", vmin=lo, vmax=hi)
                axes[row, k].set_title(
                    ("clean: " if row == 0 else "adv: ") + names[int(label)], fontsize=8
                )
        if not len(pick):
            axes[0, 0].text(0.5, 0.5, "no adversarial example at the threat epsilon", ha="center")
        return to_plot(fig, "Original vs adversarial inputs, with predicted labels")

    # tabular inputs ----------------------------------------------------------------------

    def _tabular(
        self, model: Model, test: Dataset, budget: Budget, seed: int, progress: ProgressFn
    ) -> list[Finding]:
        sample = test.sample(budget.pick(30, 60, 114), seed)
        bounds = (
            test.bounds if test.bounds is not None else (test.x.min(axis=0), test.x.max(axis=0))
        )
        data = Dataset(
            test.x,
            test.y,
            test.feature_names,
            test.class_names,
            (np.minimum(bounds[0], test.x.min(axis=0)), np.maximum(bounds[1], test.x.max(axis=0))),
        )
        constraints = TabularConstraints.for_dataset(data)
        progress(0.1)
        result = cheapest_flip(model, sample.x, constraints, n_grid=budget.pick(11, 21, 41))
        cheap = float(np.mean(result.cost <= CHEAP_EDIT)) if len(result.cost) else 0.0
        rows = self._edit_rows(result, sample, model)
        finite = result.cost[np.isfinite(result.cost)]
        finding = Finding(
            id="evasion.cheapest_edit",
            check=self.name,
            title=(
                f"{cheap:.0%} of decisions flip with an edit costing <= {CHEAP_EDIT:g} "
                "of one feature's range"
            ),
            severity=severity_from_thresholds(cheap, CHEAP_THRESHOLDS, higher_is_worse=True),
            metric="share_flipped_cheaply",
            value=cheap,
            threshold=CHEAP_THRESHOLDS[0][0],
            evidence={
                "n_examples": len(sample),
                "flippable": result.success_rate,
                "median_cost": float(np.median(finite)) if len(finite) else None,
                "queries_per_example": float(result.queries.mean()) if len(result.queries) else 0.0,
                "cost_unit": "fraction of one feature's observed range; every feature actionable",
                "cheapest_edits": rows,
            },
            recommendation=(
                "Decisions that flip on small edits of features an applicant controls invite "
                "gaming: verify those features independently, declare the immutable ones, or "
                "retrain so the "
                "decision rests on features that are hard to change."
            ),
            plots=(self._table_plot(rows),),
            headline=True,
        )
        progress(1.0)
        return [finding]

    @staticmethod
    def _edit_rows(result: TabularResult, sample: Dataset, model: Model) -> list[dict[str, object]]:
        names = list(sample.class_names) or [str(c) for c in range(model.n_classes)]
        order = [int(i) for i in np.argsort(result.cost) if result.success[i]][:TABLE_ROWS]
        return [
            {
                "example": i,
                "decision": f"{names[int(result.original_label[i])]} -> "
                f"{names[int(result.new_label[i])]}",
                "cost": float(result.cost[i]),
                "edits": result.edits[i],
            }
            for i in order
        ]

    @staticmethod
    def _table_plot(rows: list[dict[str, object]]) -> Plot:
        fig, ax = new_figure(width=8.0, height=0.4 * (len(rows) + 2))
        ax.axis("off")
        cells = []
        for r in rows:
            edits = r["edits"]
            assert isinstance(edits, list)
            text = "; ".join(f"{e['feature']}: {e['from']:.4g} -> {e['to']:.4g}" for e in edits)
            cells.append([str(r["example"]), str(r["decision"]), f"{r['cost']:.3f}", text])
        if not cells:
            cells = [["-", "no flip found", "-", "-"]]
        table = ax.table(
            cellText=cells,
            colLabels=["row", "decision", "cost", "edit"],
            loc="center",
            cellLoc="left",
            colWidths=[0.06, 0.2, 0.08, 0.66],
        )
        table.auto_set_font_size(False)
        table.set_fontsize(7)
        return to_plot(fig, "Cheapest successful edits")


CHECK = EvasionCheck()
