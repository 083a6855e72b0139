"""Differentially private training (DP-SGD, Abadi et al. 2016) with Opacus and its accountant.

Trains a fresh copy of a torch classifier's architecture with per-example gradient
clipping and Gaussian noise calibrated so the whole run spends at most `epsilon` at
`delta`. The privacy guarantee bounds what membership inference can learn about any
one training example.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Any

from bastion.core.dataset import Dataset
from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, is_differentiable

DEFAULT_DELTA = 1e-5


@dataclass(frozen=True)
class DPResult:
    """The privately trained model and its privacy accounting."""

    model: Model = field(repr=False)
    epsilon: float
    delta: float
    noise_multiplier: float
    max_grad_norm: float
    epochs: int
    batch_size: int
    sample_rate: float


def _architecture(model: Model) -> list[dict[str, Any]]:
    from bastion.core.adapters.torch_file import layers_of

    if not is_differentiable(model):
        raise UsageError(
            "DP training needs a torch model to copy the architecture from",
            fix="pass builtin:digits-cnn, builtin:digits-mlp or a Bastion .safetensors model",
        )
    layers = layers_of(model.module)  # type: ignore[attr-defined]
    if any(spec["type"].startswith("batchnorm") for spec in layers):
        raise UsageError(
            "DP-SGD cannot train BatchNorm layers (they mix examples within a batch)",
            fix="use an architecture without BatchNorm (GroupNorm or none)",
        )
    return layers


def train_dp(
    model: Model,
    train: Dataset,
    *,
    epsilon: float = 8.0,
    delta: float = DEFAULT_DELTA,
    epochs: int = 30,
    batch_size: int = 512,
    lr: float = 0.02,
    max_grad_norm: float = 1.0,
    seed: int = 0,
) -> DPResult:
    """Train `model`'s architecture from scratch on `train` with DP-SGD at (`epsilon`, `delta`).

    Opacus picks the noise multiplier so that `epochs` passes with Poisson sampling at
    rate `batch_size / len(train)` spend `epsilon` (RDP accountant); the spent budget
    is read back from the accountant.
    """
    import torch
    from opacus import PrivacyEngine
    from opacus.validators import ModuleValidator

    from bastion.core.adapters.torch import TorchModel
    from bastion.core.adapters.torch_file import build_sequential

    if not (epsilon > 0 and 0 < delta < 1):
        raise UsageError(
            f"privacy budget epsilon={epsilon}, delta={delta} is invalid",
            fix="use epsilon > 0 and 0 < delta < 1 (delta well below 1/len(train))",
        )
    if epochs < 1 or batch_size < 1:
        raise UsageError("epochs and batch size must be positive", fix="e.g. --epochs 20")
    if train.y is None:
        raise DataError("the training data has no labels", fix="provide labels (y)")
    layers = _architecture(model)
    torch.manual_seed(seed)
    module = build_sequential(layers)
    errors = ModuleValidator.validate(module, strict=False)
    if errors:
        raise UsageError(f"Opacus cannot train this model: {errors[0]}", fix="change the layer")
    data = torch.utils.data.TensorDataset(
        torch.as_tensor(train.x, dtype=torch.float32), torch.as_tensor(train.labels)
    )
    loader = torch.utils.data.DataLoader(
        data, batch_size=min(batch_size, len(data)), generator=torch.Generator().manual_seed(seed)
    )
    optimizer = torch.optim.Adam(module.parameters(), lr=lr)
    with warnings.catch_warnings():
        # Opacus warns that its secure RNG is off; seeded, reproducible noise is the point here.
        warnings.simplefilter("ignore")
        engine = PrivacyEngine(accountant="rdp")
        private, optimizer, loader = engine.make_private_with_epsilon(
            module=module,
            optimizer=optimizer,
            data_loader=loader,
            target_epsilon=epsilon,
            target_delta=delta,
            epochs=epochs,
            max_grad_norm=max_grad_norm,
            noise_generator=torch.Generator().manual_seed(seed),
        )
        for _ in range(epochs):
            private.train()
            for xb, yb in loader:
                if len(xb) == 0:
                    continue
                optimizer.zero_grad()
                torch.nn.functional.cross_entropy(private(xb), yb).backward()
                optimizer.step()
        spent = float(engine.get_epsilon(delta))
    trained = private._module.eval()
    return DPResult(
        model=TorchModel(
            trained,
            input_shape=model.input_shape,
            n_classes=model.n_classes,
            input_bounds=model.input_bounds,
            class_names=getattr(model, "class_names", None),
        ),
        epsilon=spent,
        delta=delta,
        noise_multiplier=float(optimizer.noise_multiplier),
        max_grad_norm=max_grad_norm,
        epochs=epochs,
        batch_size=batch_size,
        sample_rate=min(batch_size, len(train)) / len(train),
    )
