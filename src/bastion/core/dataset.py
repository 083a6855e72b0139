"""Datasets: arrays plus the metadata attacks and reports need."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from bastion.core.errors import DataError


@dataclass(frozen=True)
class Dataset:
    """Inputs `x`, integer labels `y` (or None), and their description.

    `bounds` is the per-feature valid range as two arrays shaped like one input.
    """

    x: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...] = ()
    class_names: tuple[str, ...] = ()
    bounds: tuple[np.ndarray, np.ndarray] | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.x.dtype.kind not in "fiub":
            raise DataError(
                f"features have dtype {self.x.dtype}, expected numbers",
                fix="encode them as numbers",
            )
        if not np.isfinite(self.x).all():
            raise DataError("features contain NaN or infinite values", fix="remove or impute them")
        if self.y is not None:
            if self.y.shape != (len(self.x),):
                raise DataError(
                    f"{len(self.x)} inputs but labels of shape {self.y.shape}",
                    fix="give exactly one integer label per input",
                )
            integral = self.y.dtype.kind in "iu" or (
                self.y.dtype.kind == "f" and bool(np.all(np.mod(self.y, 1) == 0))
            )
            if not integral:
                raise DataError(
                    "labels must be integer class indices", fix="encode classes as 0..K-1"
                )

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> np.ndarray:
        """The labels, or a DataError when the data set has none."""
        if self.y is None:
            raise DataError("this data set has no labels", fix="provide labels (y) with the data")
        return self.y.astype(np.int64)

    def subset(self, index: np.ndarray | slice) -> Dataset:
        """The rows at `index`, with the same metadata."""
        return Dataset(
            self.x[index],
            None if self.y is None else self.y[index],
            self.feature_names,
            self.class_names,
            self.bounds,
        )

    def sample(self, n: int, seed: int) -> Dataset:
        """At most `n` rows drawn without replacement (all rows when n >= len)."""
        if n >= len(self):
            return self
        rng = np.random.default_rng(seed)
        return self.subset(np.sort(rng.choice(len(self), size=n, replace=False)))


def load_dataset(
    path: str | Path, *, label_column: str = "label", feature_names: Sequence[str] = ()
) -> Dataset:
    """Read `.npz` (arrays `x`, optional `y`) or `.csv` (a header row, labels in `label_column`)."""
    p = Path(path)
    if not p.is_file():
        raise DataError(f"data file not found: {p}", fix="pass an existing .npz or .csv file")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as arrays:
                if "x" not in arrays:
                    raise DataError(
                        f"{p} has no array named 'x'", fix="save inputs as x= (and labels as y=)"
                    )
                x = arrays["x"]
                y = arrays.get("y")
        except ValueError as exc:
            raise DataError(
                f"{p} holds object arrays, which need pickle: {exc}", fix="save numeric arrays"
            ) from exc
        return Dataset(np.asarray(x, dtype=np.float32), y, tuple(feature_names))
    if p.suffix == ".csv":
        header = p.read_text(encoding="utf-8").splitlines()[0].split(",")
        names = [h.strip() for h in header]
        try:
            table = np.loadtxt(p, delimiter=",", skiprows=1, ndmin=2, dtype=np.float64)
        except ValueError as exc:
            raise DataError(
                f"{p} has non-numeric values: {exc}", fix="encode every column as numbers"
            ) from exc
        if label_column in names:
            col = names.index(label_column)
            y = table[:, col]
            x = np.delete(table, col, axis=1)
            names.pop(col)
        else:
            y, x = None, table
        return Dataset(x.astype(np.float32), y, tuple(names))
    raise DataError(f"unsupported data file type: {p.suffix or p.name}", fix="use .npz or .csv")
