"""Ensembles (averaging, voting) and random model switching as Model wrappers, plus transferability.

An averaging ensemble of torch members is itself differentiable (its logits are the
log of the mean member probabilities), so white-box attacks can target it directly.
Voting and switching are not: voting is piecewise constant and switching answers each
row with a randomly drawn member, so they are attacked through the black-box contract.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from bastion.attacks.evasion._common import (
    check_epsilon,
    check_norm,
    generator,
    inputs_and_labels,
    resolve_box,
)
from bastion.attacks.evasion.pgd import pgd_restarts
from bastion.core.errors import UsageError
from bastion.core.model import Model, is_differentiable


def _checked_members(members: Sequence[Model]) -> list[Model]:
    if len(members) < 2:
        raise UsageError("an ensemble needs at least two members", fix="pass two or more models")
    first = members[0]
    for m in members[1:]:
        if m.n_classes != first.n_classes or tuple(m.input_shape) != tuple(first.input_shape):
            raise UsageError(
                "ensemble members disagree on input shape or number of classes",
                fix="combine models trained for the same task and input format",
            )
    return list(members)


def _common_bounds(members: Sequence[Model]) -> tuple[float, float] | None:
    bounds = [m.input_bounds for m in members if m.input_bounds is not None]
    if not bounds:
        return None
    return (max(b[0] for b in bounds), min(b[1] for b in bounds))


class AveragingEnsemble:
    """Mean of the members' probabilities."""

    def __init__(self, members: Sequence[Model]) -> None:
        self.members = _checked_members(members)
        self.n_classes = self.members[0].n_classes
        self.input_shape = tuple(self.members[0].input_shape)
        self.input_bounds = _common_bounds(self.members)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return np.mean([m.predict_proba(x) for m in self.members], axis=0)


class DifferentiableAveragingEnsemble(AveragingEnsemble):
    """Averaging over torch members, exposing logits = log(mean softmax) for white-box attacks."""

    def __init__(self, members: Sequence[Model]) -> None:
        super().__init__(members)
        if not all(is_differentiable(m) for m in self.members):
            raise UsageError(
                "every member must be a torch model", fix="use AveragingEnsemble for mixed members"
            )
        self.module = torch.nn.ModuleList([m.module for m in self.members])  # type: ignore[attr-defined]

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        probs = torch.stack([torch.softmax(m.logits(x), dim=1) for m in self.members])  # type: ignore[attr-defined]
        return probs.mean(dim=0).clamp_min(1e-12).log()


def averaging_ensemble(members: Sequence[Model]) -> AveragingEnsemble:
    """An averaging ensemble, differentiable when every member is."""
    if all(is_differentiable(m) for m in members):
        return DifferentiableAveragingEnsemble(members)
    return AveragingEnsemble(members)


class VotingEnsemble:
    """Hard majority vote; the probabilities are the vote shares."""

    def __init__(self, members: Sequence[Model]) -> None:
        self.members = _checked_members(members)
        self.n_classes = self.members[0].n_classes
        self.input_shape = tuple(self.members[0].input_shape)
        self.input_bounds = _common_bounds(self.members)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        votes = np.zeros((len(x), self.n_classes))
        for m in self.members:
            votes[np.arange(len(x)), m.predict_proba(x).argmax(axis=1)] += 1
        return votes / len(self.members)


class RandomSwitching:
    """Answers each row with a member drawn at random (a moving target for query attacks)."""

    def __init__(self, members: Sequence[Model], seed: int = 0) -> None:
        self.members = _checked_members(members)
        self.n_classes = self.members[0].n_classes
        self.input_shape = tuple(self.members[0].input_shape)
        self.input_bounds = _common_bounds(self.members)
        self._rng = np.random.default_rng(seed)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        pick = self._rng.integers(0, len(self.members), size=len(x))
        out = np.zeros((len(x), self.n_classes))
        for k, m in enumerate(self.members):
            rows = np.flatnonzero(pick == k)
            if len(rows):
                out[rows] = m.predict_proba(np.asarray(x)[rows])
        return out


@dataclass(frozen=True)
class Transferability:
    """How often examples crafted on one member fool the others and the ensemble.

    `matrix[i][j]`: among inputs both classify correctly where PGD on member i succeeds,
    the fraction that member j also misclassifies. `to_ensemble[i]`: the same for the ensemble.
    """

    source_success: list[float]
    matrix: list[list[float]]
    to_ensemble: list[float]

    @property
    def mean_to_ensemble(self) -> float:
        return float(np.mean(self.to_ensemble))


def transferability(
    members: Sequence[Model],
    ensemble: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    norm: str = "linf",
    steps: int = 20,
    seed: int = 0,
) -> Transferability:
    """Craft PGD on each (differentiable) member and measure transfer to members and ensemble."""
    members = _checked_members(members)
    kind = check_norm(norm)
    xt, yt = inputs_and_labels(members[0], x, y)
    y_np = yt.numpy()
    ens_ok = ensemble.predict_proba(xt.numpy()).argmax(axis=1) == y_np
    member_ok = [m.predict_proba(xt.numpy()).argmax(axis=1) == y_np for m in members]
    success, matrix, to_ens = [], [], []
    for i, src in enumerate(members):
        if not is_differentiable(src):
            raise UsageError(
                f"member {i} has no gradients to craft with", fix="use torch members as sources"
            )
        box = resolve_box(src, xt)
        eps = check_epsilon(epsilon, box, xt, kind)
        x_adv, ok, _ = pgd_restarts(
            src.logits,  # type: ignore[attr-defined]
            xt,
            yt,
            eps=eps,
            norm=kind,
            box=box,
            steps=steps,
            step_size=2.5 * eps / steps,
            restarts=1,
            start=True,
            gen=generator(seed + i),
        )
        crafted = ok.numpy() & member_ok[i]
        success.append(float(crafted[member_ok[i]].mean()) if member_ok[i].any() else 0.0)
        adv = x_adv.numpy()
        row = []
        for j, dst in enumerate(members):
            sel = crafted & member_ok[j]
            row.append(
                float((dst.predict_proba(adv[sel]).argmax(axis=1) != y_np[sel]).mean())
                if sel.any()
                else 0.0
            )
        matrix.append(row)
        sel = crafted & ens_ok
        to_ens.append(
            float((ensemble.predict_proba(adv[sel]).argmax(axis=1) != y_np[sel]).mean())
            if sel.any()
            else 0.0
        )
    return Transferability(source_success=success, matrix=matrix, to_ensemble=to_ens)
