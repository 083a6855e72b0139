"""Datasets validate their contents; files load from .npz and .csv only."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.core.dataset import Dataset, load_dataset
from bastion.core.errors import DataError


def test_nan_features_are_refused() -> None:
    with pytest.raises(DataError, match="NaN"):
        Dataset(np.array([[1.0, np.nan]]), np.array([0]))


def test_label_count_must_match() -> None:
    with pytest.raises(DataError, match="one integer label per input"):
        Dataset(np.zeros((3, 2)), np.array([0, 1]))


def test_fractional_labels_are_refused() -> None:
    with pytest.raises(DataError, match="integer class indices"):
        Dataset(np.zeros((2, 2)), np.array([0.5, 1.0]))


def test_missing_labels_raise_on_use() -> None:
    with pytest.raises(DataError, match="no labels"):
        _ = Dataset(np.zeros((2, 2)), None).labels


def test_sample_is_seeded_and_bounded() -> None:
    ds = Dataset(np.arange(100, dtype=np.float32).reshape(50, 2), np.arange(50) % 2)
    a, b = ds.sample(10, seed=3), ds.sample(10, seed=3)
    np.testing.assert_array_equal(a.x, b.x)
    assert len(a) == 10 and len(ds.sample(500, seed=0)) == 50


def test_npz_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.ones((4, 3)), y=np.array([0, 1, 0, 1]))
    ds = load_dataset(path)
    assert ds.x.shape == (4, 3) and list(ds.labels) == [0, 1, 0, 1]


def test_npz_object_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.npz"
    np.savez(path, x=np.array([{"a": 1}, None], dtype=object))
    with pytest.raises(DataError, match="object arrays"):
        load_dataset(path)


def test_csv_with_label_column(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,label,b\n1,0,2\n3,1,4\n")
    ds = load_dataset(path)
    assert ds.feature_names == ("a", "b")
    np.testing.assert_array_equal(ds.x, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(ds.labels, [0, 1])


def test_csv_with_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("a,label\nhello,0\n")
    with pytest.raises(DataError, match="non-numeric"):
        load_dataset(path)


def test_unsupported_extension(tmp_path: Path) -> None:
    path = tmp_path / "d.parquet"
    path.write_bytes(b"PAR1")
    with pytest.raises(DataError, match="unsupported data file type"):
        load_dataset(path)
