"""A small, fast torch classifier for measuring poisoning when the real trainer is too slow."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import nn

from bastion.core.adapters.torch_fit import fit_cross_entropy
from bastion.core.dataset import Dataset


class Standardize(nn.Module):
    """Fixed per-feature standardisation, so tabular features of any scale train well."""

    def __init__(self, mean: torch.Tensor, std: torch.Tensor) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", mean)
        self.register_buffer("std", std)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.std


def train_surrogate(
    data: Dataset, seed: int, *, n_classes: int, epochs: int = 20, hidden: int = 64
) -> Any:
    """A standardising one-hidden-layer MLP trained with Adam; deterministic for a seed."""
    from bastion.core.adapters.torch import TorchModel

    torch.manual_seed(seed)
    x = torch.as_tensor(data.x, dtype=torch.float32).flatten(1)
    y = torch.as_tensor(data.labels)
    mean, std = x.mean(dim=0), x.std(dim=0)
    std = std.clamp_min(0.1 * float(std.mean()) + 1e-8)  # constant features stay bounded
    module = nn.Sequential(
        nn.Flatten(),
        Standardize(mean, std),
        nn.Linear(x.shape[1], hidden),
        nn.ReLU(),
        nn.Linear(hidden, n_classes),
    )
    fit_cross_entropy(module, x, y, epochs=epochs, lr=3e-3, batch_size=64, seed=seed)
    low_high = None
    if data.bounds is not None:
        low_high = (float(np.min(data.bounds[0])), float(np.max(data.bounds[1])))
    return TorchModel(
        module,
        input_shape=tuple(data.x.shape[1:]),
        n_classes=n_classes,
        input_bounds=low_high,
    )
