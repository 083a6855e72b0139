"""`load_model` resolves specs and refuses formats that run code on load."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.core.errors import UnknownModelError, UnsafeFormatError
from bastion.core.loading import load_model, save_model
from bastion.zoo import build


def test_builtin_spec_loads_checked_model() -> None:
    model = load_model("builtin:cancer-gbt")
    assert model.n_classes == 2 and model.input_shape == (30,)


def test_unknown_builtin_names_the_choices() -> None:
    with pytest.raises(UnknownModelError, match="no built-in model named 'nope'") as info:
        load_model("builtin:nope")
    assert "digits-cnn" in str(info.value.fix)


def test_missing_file_is_unknown() -> None:
    with pytest.raises(UnknownModelError, match="no model at"):
        load_model("/definitely/not/here.onnx")


@pytest.mark.parametrize("name", ["model.pkl", "model.bin", "renamed.onnx", "model.safetensors"])
def test_pickle_content_is_refused_whatever_the_name(tmp_path: Path, name: str) -> None:
    path = tmp_path / name
    path.write_bytes(pickle.dumps({"weights": [1, 2, 3]}, protocol=4))
    with pytest.raises(UnsafeFormatError, match="pickle-based") as info:
        load_model(path)
    assert "safetensors" in str(info.value.fix)


def test_torch_zip_checkpoint_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "checkpoint.model"
    torch.save({"w": torch.zeros(3)}, path)
    with pytest.raises(UnsafeFormatError, match="pickle-based"):
        load_model(path)


def test_unknown_file_type(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(UnknownModelError, match="unsupported model file"):
        load_model(path)


def test_skops_round_trip_keeps_metadata(tmp_path: Path) -> None:
    model = build("cancer-logreg")
    path = tmp_path / "logreg.skops"
    save_model(model, path)
    loaded = load_model(path)
    x = np.random.default_rng(0).random((4, 30)).astype(np.float32) * 10
    np.testing.assert_allclose(loaded.predict_proba(x), model.predict_proba(x))
    assert loaded.class_names == ["malignant", "benign"]


def test_skops_with_untrusted_callable_is_refused(tmp_path: Path) -> None:
    import os

    import skops.io as sio
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    path.write_bytes(sio.dumps(FunctionTransformer(func=os.system)))
    with pytest.raises(UnsafeFormatError, match="does not trust"):
        load_model(path)


def test_skops_function_inside_numpy_is_refused(tmp_path: Path) -> None:
    """A function under a trusted-looking package (numpy.testing's `runstring` is exec)."""
    import skops.io as sio
    from numpy.testing._private.utils import runstring
    from sklearn.preprocessing import FunctionTransformer

    path = tmp_path / "evil.skops"
    path.write_bytes(sio.dumps(FunctionTransformer(func=runstring)))
    with pytest.raises(UnsafeFormatError, match="runstring"):
        load_model(path)


@pytest.mark.parametrize("name", ["cancer-gbt", "cancer-logreg"])
def test_zoo_tree_and_linear_models_load_from_skops(tmp_path: Path, name: str) -> None:
    path = tmp_path / f"{name}.skops"
    save_model(build(name), path)
    assert load_model(path).n_classes == 2
