"""Resolve what to assess: a model spec plus its data, trainer and training split when known."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.assess.check import AssessmentData
from bastion.core.dataset import Dataset, load_dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.loading import load_model
from bastion.core.model import Model, check_inputs


def resolve(
    spec: str, data: Path | None = None, train_data: Path | None = None
) -> tuple[Model, AssessmentData]:
    """The model and the data its checks use.

    Built-in models bring their own held-out split, training split and trainer;
    other models need `data` (labelled held-out examples).
    """
    model = load_model(spec)
    if spec.startswith("builtin:") and data is None:
        from bastion.zoo import entry

        e = entry(spec.removeprefix("builtin:"))
        train, test = e.load_data()
        return model, AssessmentData(test=test, train=train, trainer=e.train)
    if data is None:
        raise UsageError(
            "no evaluation data for this model", fix="pass --data FILE (.npz with x, y or .csv)"
        )
    test = _validated(load_dataset(data), model, "--data")
    known = _validated(load_dataset(train_data), model, "--train-data") if train_data else None
    return model, AssessmentData(test=test, train=known)


def _validated(ds: Dataset, model: Model, option: str) -> Dataset:
    x = ds.x
    if x.ndim == 2 and len(model.input_shape) > 1 and x.shape[1] == int(np.prod(model.input_shape)):
        x = x.reshape((len(x), *model.input_shape))  # flat rows (CSV) for an image model
    x = check_inputs(model, x)
    if ds.y is None:
        raise DataError(
            f"{option} has no labels", fix="include labels (y= in .npz, a 'label' column in .csv)"
        )
    y = ds.labels
    if y.min(initial=0) < 0 or y.max(initial=0) >= model.n_classes:
        raise DataError(
            f"{option} labels span {y.min()}..{y.max()}, the model has {model.n_classes} classes",
            fix="encode labels as 0..n_classes-1 in the model's class order",
        )
    return Dataset(x, y, ds.feature_names, ds.class_names, ds.bounds)
