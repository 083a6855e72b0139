"""The zoo's entries, and building them: from the cache, or trained once and cached."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from bastion.core.dataset import Dataset
from bastion.core.errors import UnknownModelError
from bastion.core.model import Model
from bastion.core.paths import cache_dir
from bastion.zoo import data, trainers

CACHE_VERSION = "v1"

Trainer = Callable[[Dataset, int], Model]


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
