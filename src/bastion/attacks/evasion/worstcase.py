"""Worst-case robustness: per example, the strongest result over a suite of attacks.

A point counts as robust at epsilon only if every attack in the suite fails on it.
Attacks run cheapest first and each one only sees the points still standing; the
epsilons run in ascending order and a point broken at a smaller epsilon stays broken
(its adversarial example lies inside every larger ball), so only survivors go on.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from bastion.attacks.evasion._common import (
    BoundsArg,
    Box,
    LogitsFn,
    Norm,
    QueryCounter,
    check_epsilon,
    check_norm,
    flat_norm,
    generator,
    inputs_and_labels,
    require_differentiable,
    resolve_box,
)
from bastion.attacks.evasion.apgd import apgd_tensor
from bastion.attacks.evasion.fgsm import fgsm_tensor
from bastion.attacks.evasion.pgd import pgd_restarts
from bastion.attacks.evasion.square import square_tensor
from bastion.core.errors import UsageError
from bastion.core.model import Model, is_differentiable

ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class Suite:
    """Which attacks run, in order from cheap to expensive, and how hard each one tries."""

    fgsm: bool = True
    pgd_steps: int = 20
    apgd_iter: int = 100
    apgd_restarts: int = 1
    apgd_targets: int = 3
    square_queries: int = 0

    @classmethod
    def for_budget(cls, budget: str) -> Suite:
        """quick: FGSM + PGD + short APGD-CE; standard adds targeted DLR; thorough adds Square."""
        if budget == "quick":
            return cls(pgd_steps=10, apgd_iter=25, apgd_targets=0)
        if budget == "thorough":
            return cls(pgd_steps=40, apgd_iter=100, apgd_targets=9, square_queries=1000)
        return cls(pgd_steps=20, apgd_iter=50, apgd_targets=3)


@dataclass(frozen=True)
class WorstCaseResult:
    """Robust accuracy per epsilon and the evidence behind it.

    `min_broken_epsilon[i]` is the smallest grid epsilon at which example i was broken
    (0 when it is misclassified clean, inf when it survived every epsilon). `x_adv[j]`
    holds the adversarial example found at `epsilons[j]` (the clean input where none).
    """

    norm: Norm
    epsilons: list[float]
    clean_accuracy: float
    robust_accuracy: list[float]
    min_broken_epsilon: np.ndarray
    x_adv: list[np.ndarray]
    broken_by: list[dict[str, int]]
    queries: dict[str, int]
    seconds: dict[str, float]
    n_examples: int
    attacks: list[str] = field(default_factory=list)

    @property
    def median_min_perturbation(self) -> float:
        """Median smallest breaking epsilon over clean-correct examples (inf if most survive)."""
        m = self.min_broken_epsilon[self.min_broken_epsilon > 0]
        return float(np.median(m)) if len(m) else float("nan")

    def to_dict(self) -> dict[str, object]:
        """The plain-metric part, for reports and JSON."""
        return {
            "norm": self.norm,
            "epsilons": self.epsilons,
            "clean_accuracy": self.clean_accuracy,
            "robust_accuracy": self.robust_accuracy,
            "median_min_perturbation": self.median_min_perturbation,
            "broken_by": self.broken_by,
            "queries": self.queries,
            "seconds": {k: round(v, 3) for k, v in self.seconds.items()},
            "n_examples": self.n_examples,
            "attacks": self.attacks,
        }


Stage = Callable[[torch.Tensor, torch.Tensor, float], tuple[torch.Tensor, torch.Tensor, int]]
"""(x, y, eps) -> (adversarial x, success, model evaluations spent, counted per example)."""


def _white_box_stages(
    logits: LogitsFn, norm: Norm, box: Box, suite: Suite, seed: int
) -> list[tuple[str, Stage]]:
    gen = generator(seed)
    stages: list[tuple[str, Stage]] = []

    def fooled(xa: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return logits(xa).argmax(dim=1) != y

    if suite.fgsm:

        def run_fgsm(
            x: torch.Tensor, y: torch.Tensor, eps: float
        ) -> tuple[torch.Tensor, torch.Tensor, int]:
            xa = fgsm_tensor(logits, x, y, eps, norm, box)
            return xa, fooled(xa, y), 2 * len(x)

        stages.append(("fgsm", run_fgsm))
    if suite.pgd_steps > 0:

        def run_pgd(
            x: torch.Tensor, y: torch.Tensor, eps: float
        ) -> tuple[torch.Tensor, torch.Tensor, int]:
            xa, ok, spent = pgd_restarts(
                logits,
                x,
                y,
                eps=eps,
                norm=norm,
                box=box,
                steps=suite.pgd_steps,
                step_size=2.5 * eps / suite.pgd_steps,
                restarts=1,
                start=True,
                gen=gen,
            )
            return xa, ok, int(spent.sum())

        stages.append(("pgd", run_pgd))
    if suite.apgd_iter > 0:

        def run_apgd_ce(
            x: torch.Tensor, y: torch.Tensor, eps: float
        ) -> tuple[torch.Tensor, torch.Tensor, int]:
            xa, ok, spent = apgd_tensor(
                logits,
                x,
                y,
                eps=eps,
                norm=norm,
                box=box,
                loss="ce",
                n_iter=suite.apgd_iter,
                restarts=suite.apgd_restarts,
                n_targets=1,
                gen=gen,
            )
            return xa, ok, int(spent.sum())

        stages.append(("apgd-ce", run_apgd_ce))
    if suite.apgd_iter > 0 and suite.apgd_targets > 0:

        def run_apgd_t(
            x: torch.Tensor, y: torch.Tensor, eps: float
        ) -> tuple[torch.Tensor, torch.Tensor, int]:
            xa, ok, spent = apgd_tensor(
                logits,
                x,
                y,
                eps=eps,
                norm=norm,
                box=box,
                loss="dlr-targeted",
                n_iter=suite.apgd_iter,
                restarts=suite.apgd_restarts,
                n_targets=suite.apgd_targets,
                gen=gen,
            )
            return xa, ok, int(spent.sum())

        stages.append(("apgd-dlr-targeted", run_apgd_t))
    return stages


def _square_stage(model: Model, norm: Norm, box: Box, queries: int, seed: int) -> Stage:
    gen = generator(seed + 1)

    def run(x: torch.Tensor, y: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor, int]:
        counter = QueryCounter(model, len(x))
        xa, ok = square_tensor(
            counter,
            x,
            y,
            eps=eps,
            norm=norm,
            box=box,
            n_queries=queries,
            p_init=0.8,
            gen=gen,
        )
        return xa, ok, int(counter.counts.sum())

    return run


def worst_case(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilons: Sequence[float],
    norm: str = "linf",
    suite: Suite | None = None,
    bounds: BoundsArg = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> WorstCaseResult:
    """Robust accuracy at each epsilon under the suite's strongest per-example result.

    White-box stages need a differentiable model; without gradients only Square runs
    (with 1000 queries unless the suite sets another budget).
    """
    kind = check_norm(norm)
    suite = suite or Suite()
    if not epsilons:
        raise UsageError("no epsilons given", fix="pass at least one epsilon")
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    eps_list = sorted(check_epsilon(e, box, xt, kind) for e in epsilons)
    stages: list[tuple[str, Stage]] = []
    if is_differentiable(model):
        logits = require_differentiable(model, "worst-case evaluation")
        stages = _white_box_stages(logits, kind, box, suite, seed)
        with torch.no_grad():
            pred = torch.cat(
                [logits(xt[i : i + 1024]).argmax(dim=1) for i in range(0, len(xt), 1024)]
            )
    else:
        pred = torch.as_tensor(model.predict_proba(xt.numpy()).argmax(axis=1))
    square_queries = suite.square_queries or (0 if stages else 1000)
    if square_queries:
        stages.append(("square", _square_stage(model, kind, box, square_queries, seed)))
    names = [name for name, _ in stages]
    correct = pred == yt
    min_eps = torch.where(correct, torch.tensor(float("inf")), torch.tensor(0.0))
    current = xt.clone()
    queries = dict.fromkeys(names, 0)
    seconds = dict.fromkeys(names, 0.0)
    robust, adv_per_eps, broken_by = [], [], []
    total = len(eps_list) * max(len(stages), 1)
    done = 0
    for eps in eps_list:
        counts = dict.fromkeys(names, 0)
        for name, stage in stages:
            alive = torch.isinf(min_eps).nonzero().squeeze(1)
            if len(alive):
                start = time.perf_counter()
                xa, ok, cost = stage(xt[alive], yt[alive], eps)
                seconds[name] += time.perf_counter() - start
                queries[name] += cost
                current[alive[ok]] = xa[ok]
                min_eps[alive[ok]] = eps
                counts[name] = int(ok.sum())
            done += 1
            if progress is not None:
                progress(done / total)
        robust.append(float(torch.isinf(min_eps).float().mean()))
        adv_per_eps.append(current.clone().numpy())
        broken_by.append(counts)
    return WorstCaseResult(
        norm=kind,
        epsilons=eps_list,
        clean_accuracy=float(correct.float().mean()),
        robust_accuracy=robust,
        min_broken_epsilon=min_eps.numpy(),
        x_adv=adv_per_eps,
        broken_by=broken_by,
        queries=queries,
        seconds=seconds,
        n_examples=len(xt),
        attacks=names,
    )


def perturbation_norms(result: WorstCaseResult, x: np.ndarray, index: int) -> np.ndarray:
    """Norms of the successful perturbations found at `epsilons[index]`."""
    delta = torch.as_tensor(result.x_adv[index] - np.asarray(x, dtype=np.float32))
    broken = (result.min_broken_epsilon > 0) & (result.min_broken_epsilon <= result.epsilons[index])
    return flat_norm(delta, result.norm).numpy()[broken]
