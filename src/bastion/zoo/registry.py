"""The zoo's entries, and building them: from the cache, or trained once and cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from bastion.core.dataset import Dataset
from bastion.core.errors import UnknownModelError
from bastion.core.model import Model
from bastion.core.paths import cache_dir
from bastion.zoo import data, trainers

CACHE_VERSION = "v1"

Trainer = Callable[[Dataset, int], Model]


OVERFIT_TRAIN_ROWS = 500


def digits_overfit_data() -> tuple[Dataset, Dataset]:
    """The first 500 digits training rows; every other digit (937 + 360 rows) is held out."""
    train, test = data.digits()
    rest = train.subset(slice(OVERFIT_TRAIN_ROWS, None))
    held_out = Dataset(
        np.concatenate([rest.x, test.x]),
        np.concatenate([rest.labels, test.labels]),
        test.feature_names,
        test.class_names,
        test.bounds,
    )
    return train.subset(slice(0, OVERFIT_TRAIN_ROWS)), held_out


@dataclass(frozen=True)
class ZooEntry:
    """A demo model: its data, its training function, and how it is stored."""

    name: str
    description: str
    kind: Literal["torch", "sklearn"]
    load_data: Callable[[], tuple[Dataset, Dataset]]
    train: Trainer

    @property
    def filename(self) -> str:
        return "model.safetensors" if self.kind == "torch" else "model.skops"


ZOO: dict[str, ZooEntry] = {
    e.name: e
    for e in [
        ZooEntry(
            "digits-cnn",
            "small CNN on the 8x8 digits",
            "torch",
            data.digits,
            trainers.train_digits_cnn,
        ),
        ZooEntry(
            "digits-mlp", "MLP on the 8x8 digits", "torch", data.digits, trainers.train_digits_mlp
        ),
        ZooEntry(
            "digits-mlp-overfit",
            "deliberately overfit MLP on 500 digits (membership-inference target)",
            "torch",
            digits_overfit_data,
            trainers.train_digits_mlp_overfit,
        ),
        ZooEntry(
            "cancer-logreg",
            "logistic regression on breast cancer",
            "sklearn",
            data.cancer,
            trainers.train_cancer_logreg,
        ),
        ZooEntry(
            "cancer-gbt",
            "gradient boosting on breast cancer",
            "sklearn",
            data.cancer,
            trainers.train_cancer_gbt,
        ),
    ]
}


def entry(name: str) -> ZooEntry:
    """The zoo entry called `name`."""
    try:
        return ZOO[name]
    except KeyError:
        raise UnknownModelError(
            f"no built-in model named {name!r}", fix=f"choose one of: {', '.join(sorted(ZOO))}"
        ) from None


def model_path(name: str) -> Path:
    """Where the trained model is cached."""
    e = entry(name)
    return cache_dir() / "zoo" / CACHE_VERSION / name / e.filename


def build(name: str) -> Model:
    """The trained model `name`, trained (deterministically, seed 0) on first use."""
    from bastion.core import loading

    e = entry(name)
    path = model_path(name)
    if not path.exists():
        train, _ = e.load_data()
        model = e.train(train, 0)
        loading.save_model(model, path)
    return loading.load_file(path)
