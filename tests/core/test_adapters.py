"""Adapters from scikit-learn, torch and ONNX to the Model contract."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from bastion.core.adapters import torch_file
from bastion.core.adapters.onnx import OnnxModel, export_torch
from bastion.core.adapters.sklearn import SklearnModel
from bastion.core.adapters.torch import TorchModel
from bastion.core.errors import InputError
from bastion.core.loading import load_model
from bastion.core.model import DifferentiableModel, Model, is_differentiable
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def digits_cnn() -> TorchModel:
    model = build("digits-cnn")
    assert isinstance(model, TorchModel)
    return model


def test_sklearn_adapter_matches_estimator() -> None:
    model = build("cancer-logreg")
    _, test = entry("cancer-logreg").load_data()
    assert isinstance(model, SklearnModel) and isinstance(model, Model)
    np.testing.assert_allclose(
        model.predict_proba(test.x), model.estimator.predict_proba(test.x), atol=1e-6
    )
    assert model.input_shape == (30,) and model.n_classes == 2
    assert model.class_names == ["malignant", "benign"]


def test_sklearn_adapter_refuses_non_probabilistic_and_unfitted() -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.svm import LinearSVC

    x, y = np.random.default_rng(0).normal(size=(20, 3)), np.arange(20) % 2
    with pytest.raises(InputError, match="predict_proba"):
        SklearnModel(LinearSVC().fit(x, y))
    with pytest.raises(InputError, match="not fitted"):
        SklearnModel(LogisticRegression())


def test_torch_adapter_is_differentiable(digits_cnn: TorchModel) -> None:
    assert isinstance(digits_cnn, DifferentiableModel) and is_differentiable(digits_cnn)
    x = torch.rand(4, 1, 8, 8, requires_grad=True)
    digits_cnn.logits(x).sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
    probs = digits_cnn.predict_proba(x.detach().numpy())
    expected = torch.softmax(digits_cnn.logits(x.detach()), dim=1).detach().numpy()
    np.testing.assert_allclose(probs, expected, atol=1e-6)
    assert digits_cnn.input_bounds == (0.0, 1.0)


def test_safetensors_round_trip(digits_cnn: TorchModel, tmp_path: Path) -> None:
    path = tmp_path / "m.safetensors"
    torch_file.save(digits_cnn, path)
    loaded = load_model(path)
    _, test = entry("digits-cnn").load_data()
    np.testing.assert_allclose(
        loaded.predict_proba(test.x), digits_cnn.predict_proba(test.x), atol=1e-6
    )
    assert loaded.input_shape == (1, 8, 8) and loaded.class_names == digits_cnn.class_names


def test_safetensors_without_spec_is_refused(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = tmp_path / "weights.safetensors"
    save_file({"w": torch.zeros(2, 2)}, str(path))
    with pytest.raises(InputError, match="no Bastion architecture spec"):
        load_model(path)


def test_safetensors_spec_with_unknown_layer_is_refused(
    digits_cnn: TorchModel, tmp_path: Path
) -> None:
    data = torch_file.to_bytes(digits_cnn)
    header_len = int.from_bytes(data[:8], "little")
    header = json.loads(data[8 : 8 + header_len])
    header["__metadata__"]["layers"] = json.dumps([{"type": "eval", "code": "import os"}])
    new_header = json.dumps(header).encode()
    path = tmp_path / "evil.safetensors"
    path.write_bytes(len(new_header).to_bytes(8, "little") + new_header + data[8 + header_len :])
    with pytest.raises(InputError, match="unknown layer type 'eval'"):
        load_model(path)


def test_onnx_adapter_agrees_with_torch(digits_cnn: TorchModel, tmp_path: Path) -> None:
    path = tmp_path / "digits.onnx"
    export_torch(digits_cnn, path)
    model = load_model(path)
    assert isinstance(model.inner, OnnxModel)
    assert model.input_shape == (1, 8, 8) and model.n_classes == 10
    _, test = entry("digits-cnn").load_data()
    onnx_probs = model.predict_proba(test.x)
    np.testing.assert_allclose(onnx_probs, digits_cnn.predict_proba(test.x), atol=1e-4)


def test_onnx_logits_mode_applies_softmax(digits_cnn: TorchModel, tmp_path: Path) -> None:
    path = tmp_path / "digits.onnx"
    export_torch(digits_cnn, path)
    probs_model = OnnxModel(path)
    logits_model = OnnxModel(path, outputs="logits")
    x = np.random.default_rng(0).random((5, 1, 8, 8), dtype=np.float32)
    # Soft-maxing probabilities again flattens them but keeps the ranking and normalisation.
    again = logits_model.predict_proba(x)
    np.testing.assert_allclose(again.sum(axis=1), 1.0, atol=1e-6)
    np.testing.assert_array_equal(again.argmax(1), probs_model.predict_proba(x).argmax(1))


def test_onnx_garbage_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.onnx"
    path.write_bytes(b"\x08\x07garbage that is not a protobuf model")
    with pytest.raises(InputError, match="not a loadable ONNX model"):
        load_model(path)
