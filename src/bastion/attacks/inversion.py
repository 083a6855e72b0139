"""Model inversion: class-representative reconstruction by gradient descent (MI-Face, Fredrikson
et al. 2015) for image models, and attribute inference for tabular models, measured against a
baseline that guesses from the attribute's marginal distribution."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from bastion.attacks.oracle import LabelOnlyError, Oracle, check_budget, check_features
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import DifferentiableModel, Model, is_differentiable

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class InversionResult:
    """One reconstruction per class, the model's confidence in each, and how recognisable they are.

    `identification` is the fraction of classes whose reconstruction lies nearer its own class
    mean than any other class mean (chance is 1 / n_classes); None without labelled reference data.
    """

    reconstructions: np.ndarray
    confidence: np.ndarray
    class_means: np.ndarray | None
    identification: float | None
    gradient_steps: int


def _total_variation(x: torch.Tensor) -> torch.Tensor:
    return (x[..., 1:, :] - x[..., :-1, :]).abs().mean() + (
        x[..., :, 1:] - x[..., :, :-1]
    ).abs().mean()


def mi_face(
    model: DifferentiableModel,
    *,
    steps: int = 200,
    lr: float = 0.05,
    tv_weight: float = 0.05,
    prior_weight: float = 0.05,
    start: np.ndarray | None = None,
    reference: Dataset | None = None,
    seed: int = 0,
) -> InversionResult:
    """Reconstruct one input per class by minimising -log p(c | x) + TV(x) + ||x - start||^2.

    `start` (e.g. the mean of unlabelled public inputs) is both the starting point and the prior;
    `reference` (labelled data) only scores the result against the true class means.
    """
    import torch

    if not is_differentiable(model):
        raise UsageError(
            "MI-Face needs gradients but this model is a black box",
            fix="assess a torch model (white box) or use attribute inference",
        )
    if len(model.input_shape) != 3:
        raise DataError(
            f"MI-Face reconstructs images; inputs have shape {model.input_shape}",
            fix="use attribute_inference for tabular models",
        )
    steps = check_budget(steps, "number of gradient steps")
    torch.manual_seed(seed)
    lo, hi = model.input_bounds or (-np.inf, np.inf)
    k = model.n_classes
    x0 = (
        np.zeros(model.input_shape, np.float32)
        if start is None
        else check_features(model, start[None], "start")[0]
    )
    prior = torch.as_tensor(x0).expand(k, *model.input_shape)
    x = prior.clone().requires_grad_(True)
    target = torch.arange(k)
    opt = torch.optim.Adam([x], lr=lr)
    for _ in range(steps):
        opt.zero_grad()
        nll = torch.nn.functional.cross_entropy(model.logits(x), target, reduction="sum")
        loss = nll + k * (
            tv_weight * _total_variation(x) + prior_weight * ((x - prior) ** 2).mean()
        )
        loss.backward()
        opt.step()
        with torch.no_grad():
            x.clamp_(lo, hi)
    recon = x.detach().numpy()
    with torch.no_grad():
        confidence = torch.softmax(model.logits(x), dim=1)[target, target].numpy()
    means, ident = None, None
    if reference is not None:
        ref_x = check_features(model, reference.x, "reference data")
        labels = reference.labels
        means = np.stack(
            [
                ref_x[labels == c].mean(axis=0)
                if (labels == c).any()
                else np.full(x0.shape, np.nan)
                for c in range(k)
            ]
        )
        dist = ((recon.reshape(k, 1, -1) - means.reshape(1, k, -1)) ** 2).sum(axis=2)
        present = ~np.isnan(dist).any(axis=0)
        nearest = np.where(present[None, :], dist, np.inf).argmin(axis=1)
        ident = float((nearest == np.arange(k))[present].mean())
    return InversionResult(recon, confidence, means, ident, steps)


@dataclass(frozen=True)
class AttributeInferenceResult:
    """How often the attack puts a record's hidden attribute in the right bin, against the baseline
    that always guesses the marginal's most common bin."""

    feature: int
    feature_name: str
    accuracy: float
    baseline_accuracy: float
    advantage: float
    n_bins: int
    n_records: int
    queries: int
    predicted_bins: np.ndarray
    true_bins: np.ndarray


def attribute_inference(
    model: Model,
    records: Dataset,
    feature: int,
    *,
    population: Dataset,
    n_bins: int = 5,
    candidates_per_bin: int = 4,
) -> AttributeInferenceResult:
    """Infer column `feature` of each record from the other columns and the model's output on the
    full record: try candidate values drawn from the marginal in `population` and keep the one whose
    output matches best (log-probability distance; ties go to the more common bin)."""
    if len(model.input_shape) != 1:
        raise DataError(
            f"attribute inference needs tabular inputs; the model takes {model.input_shape}",
            fix="use mi_face for image models",
        )
    x = check_features(model, records.x, "records")
    pop = check_features(model, population.x, "population data")
    d = model.input_shape[0]
    if not 0 <= feature < d:
        raise DataError(
            f"feature index {feature} is outside 0..{d - 1}", fix="pick an existing column"
        )
    if len(x) == 0 or len(pop) < n_bins:
        raise DataError(
            "too few records or population rows for attribute inference",
            fix=f"give at least one record and {n_bins} population rows",
        )
    n_bins = check_budget(n_bins, "number of bins")
    column = pop[:, feature].astype(np.float64)
    edges = np.unique(np.quantile(column, np.linspace(0, 1, n_bins + 1)[1:-1]))
    prior = np.bincount(
        np.searchsorted(edges, column, side="right"), minlength=len(edges) + 1
    ) / len(column)
    values = np.unique(
        np.quantile(column, np.linspace(0, 1, (len(edges) + 1) * candidates_per_bin))
    )
    value_bins = np.searchsorted(edges, values, side="right")
    oracle = Oracle(model)
    observed = np.log(np.clip(oracle.query(x), 1e-12, 1.0))
    if oracle.label_only:
        raise LabelOnlyError(
            "attribute inference here compares probability vectors; the model returns only labels",
            fix="assess the score-returning API (label-only outputs already resist this attack)",
        )
    trials = np.repeat(x, len(values), axis=0)
    trials[:, feature] = np.tile(values, len(x))
    outputs = np.log(np.clip(oracle.query(trials), 1e-12, 1.0)).reshape(len(x), len(values), -1)
    distance = np.abs(outputs - observed[:, None, :]).sum(axis=2)
    distance -= 1e-9 * prior[value_bins][None, :]  # tie-break towards common bins
    predicted = value_bins[distance.argmin(axis=1)]
    truth = np.searchsorted(edges, x[:, feature].astype(np.float64), side="right")
    accuracy = float((predicted == truth).mean())
    baseline = float((truth == prior.argmax()).mean())
    name = (
        population.feature_names[feature]
        if feature < len(population.feature_names)
        else f"feature {feature}"
    )
    return AttributeInferenceResult(
        feature,
        name,
        accuracy,
        baseline,
        accuracy - baseline,
        len(edges) + 1,
        len(x),
        oracle.queries,
        predicted,
        truth,
    )
