"""Clean-label poisoning by feature collision (Shafahi et al. 2018, "Poison Frogs").

Poisons look like (and are correctly labelled as) the base class but sit next to a chosen
target input in the feature space of a model the attacker has, so a model trained on them
learns to put the target in the base class.
"""

from __future__ import annotations

import numpy as np

from bastion.attacks.poisoning.base import (
    Poisoned,
    check_class,
    choose,
    labelled,
    poison_count,
    with_rows,
)
from bastion.attacks.poisoning.features import feature_tensor
from bastion.core.dataset import Dataset
from bastion.core.errors import UsageError
from bastion.core.model import Model, predict_labels


def feature_collision(
    model: Model,
    data: Dataset,
    targets: np.ndarray,
    rate: float,
    base_class: int,
    seed: int,
    *,
    steps: int = 150,
    beta: float = 0.1,
    opacity: float = 0.3,
    lr: float = 0.02,
) -> Poisoned:
    """Craft a `rate` fraction of poisons from `base_class` rows, shared among `targets`.

    `model` is the attacker's feature extractor (a torch model). Each poison starts as a
    base image blended with its target at `opacity`, then moves so its features match
    the target's while staying within `beta`-weighted distance of that start. Attack
    success is the fraction of `targets` the poisoned model assigns to `base_class`.
    """
    import torch

    labels = labelled(data)
    base_class = check_class(base_class, model.n_classes, "base")
    targets = np.asarray(targets, dtype=np.float32)
    if targets.ndim != data.x.ndim or targets.shape[1:] != data.x.shape[1:] or not len(targets):
        raise UsageError(
            f"targets have shape {targets.shape}, expected (N, *{data.x.shape[1:]})",
            fix="pass one or more inputs shaped like the training data",
        )
    rng = np.random.default_rng(seed)
    n = poison_count(len(data), rate)
    index = choose(np.flatnonzero(labels == base_class), n, rng, f"rows of class {base_class}")
    owner = np.arange(n) % len(targets)
    low, high = model.input_bounds or (-np.inf, np.inf)
    torch.manual_seed(seed)
    target_t = torch.as_tensor(targets[owner])
    start = torch.clamp(
        (1 - opacity) * torch.as_tensor(data.x[index]) + opacity * target_t, low, high
    )
    with torch.no_grad():
        goal = feature_tensor(model, target_t)
    poison = start.clone().requires_grad_(True)
    optimizer = torch.optim.Adam([poison], lr=lr)
    for _ in range(steps):
        optimizer.zero_grad()
        collide = (feature_tensor(model, poison) - goal).pow(2).sum(dim=1)
        stay = (poison - start).flatten(1).pow(2).sum(dim=1)
        (collide + beta * goal.shape[1] * stay).sum().backward()
        optimizer.step()
        with torch.no_grad():
            poison.clamp_(low, high)
    x = data.x.copy()
    x[index] = poison.detach().numpy()

    def success(trained: Model, _test: Dataset) -> float:
        return float((predict_labels(trained, targets) == base_class).mean())

    return Poisoned(
        "feature_collision",
        rate,
        with_rows(data, x, labels.copy()),
        index,
        success,
        {"base_class": base_class, "n_targets": len(targets)},
    )
