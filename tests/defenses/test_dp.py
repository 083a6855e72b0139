"""DP-SGD training: the accountant's epsilon, reproducibility, and refused inputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from bastion.core.adapters.torch import TorchModel
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.defenses.dp import train_dp
from bastion.zoo import build, entry


@pytest.fixture(scope="module")
def small() -> tuple[Dataset, Dataset]:
    train, test = entry("digits-mlp").load_data()
    return train.sample(600, seed=0), test


def test_spends_at_most_the_budget_and_learns(small) -> None:
    train, test = small
    result = train_dp(build("digits-mlp"), train, epsilon=4.0, epochs=8, batch_size=200, seed=0)
    assert 3.0 < result.epsilon <= 4.0
    assert result.noise_multiplier > 0.5
    accuracy = (result.model.predict_proba(test.x).argmax(axis=1) == test.labels).mean()
    assert accuracy > 0.5  # far above chance (0.1) despite the noise


def test_same_seed_same_model(small) -> None:
    train, _ = small
    a = train_dp(build("digits-mlp"), train, epochs=2, batch_size=200, seed=5).model
    b = train_dp(build("digits-mlp"), train, epochs=2, batch_size=200, seed=5).model
    for (name, pa), (_, pb) in zip(
        a.module.state_dict().items(), b.module.state_dict().items(), strict=True
    ):
        assert torch.equal(pa, pb), name


def test_bad_input(small) -> None:
    train, _ = small
    model = build("digits-mlp")
    with pytest.raises(UsageError, match="privacy budget"):
        train_dp(model, train, epsilon=0.0)
    with pytest.raises(UsageError, match="privacy budget"):
        train_dp(model, train, delta=1.0)
    with pytest.raises(DataError, match="no labels"):
        train_dp(model, Dataset(train.x, None))
    with pytest.raises(UsageError, match="torch model"):
        train_dp(build("cancer-logreg"), train)
    bn = torch.nn.Sequential(
        torch.nn.Flatten(),
        torch.nn.Linear(64, 16),
        torch.nn.BatchNorm1d(16),
        torch.nn.Linear(16, 10),
    )
    with pytest.raises(UsageError, match="BatchNorm"):
        train_dp(TorchModel(bn, input_shape=(1, 8, 8), n_classes=10), train)


def test_private_model_saves_in_the_safe_format(small, tmp_path) -> None:
    from bastion.core.loading import load_file, save_model

    train, test = small
    result = train_dp(build("digits-mlp"), train, epochs=1, batch_size=200, seed=0)
    save_model(result.model, tmp_path / "dp.safetensors")
    loaded = load_file(tmp_path / "dp.safetensors")
    assert np.allclose(
        loaded.predict_proba(test.x[:5]), result.model.predict_proba(test.x[:5]), atol=1e-6
    )


@pytest.mark.slow
def test_digits_cnn_at_epsilon_8_reaches_90_percent() -> None:
    train, test = entry("digits-cnn").load_data()
    result = train_dp(build("digits-cnn"), train, epsilon=8.0, delta=1e-5, seed=0)
    assert result.epsilon <= 8.0
    assert (result.model.predict_proba(test.x).argmax(axis=1) == test.labels).mean() >= 0.9
