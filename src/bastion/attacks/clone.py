"""Substitute ("clone") networks trained on a victim's answers, for learning-based extraction."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from bastion.core.adapters.torch import TorchModel


class Standardize(nn.Module):
    """Fixed affine input scaling, so tabular features of any range train well."""

    def __init__(self, shift: np.ndarray, scale: np.ndarray) -> None:
        super().__init__()
        self.register_buffer("shift", torch.as_tensor(shift, dtype=torch.float32))
        self.register_buffer("scale", torch.as_tensor(scale, dtype=torch.float32))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.get_buffer("shift")) / self.get_buffer("scale")


@dataclass(frozen=True)
class CloneSettings:
    """How a clone trains: epochs per fit (at most `max_steps` steps), step size, batch size."""

    epochs: int = 30
    max_steps: int = 300
    lr: float = 2e-3
    batch_size: int = 64


def new_clone(
    input_shape: tuple[int, ...],
    n_classes: int,
    reference_x: np.ndarray,
    seed: int,
    input_bounds: tuple[float, float] | None = None,
) -> TorchModel:
    """An untrained clone: a small CNN for (C, H, W) inputs, an MLP otherwise."""
    torch.manual_seed(seed)
    ref = np.asarray(reference_x, dtype=np.float64)
    if len(input_shape) == 3:
        c, h, w = input_shape
        shift, scale = np.float32(ref.mean()), np.float32(max(ref.std(), 1e-6))
        body: list[nn.Module] = [
            nn.Conv2d(c, 16, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(16, 32, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Flatten(),
            nn.Linear(32 * (h // 2) * (w // 2), 64),
            nn.ReLU(),
            nn.Linear(64, n_classes),
        ]
        module = nn.Sequential(Standardize(np.array(shift), np.array(scale)), *body)
    else:
        flat = ref.reshape(len(ref), -1)
        std = np.where(flat.std(axis=0) > 1e-9, flat.std(axis=0), 1.0)
        d = flat.shape[1]
        module = nn.Sequential(
            nn.Flatten(),
            Standardize(flat.mean(axis=0), std),
            nn.Linear(d, 128),
            nn.ReLU(),
            nn.Linear(128, 128),
            nn.ReLU(),
            nn.Linear(128, n_classes),
        )
    return TorchModel(
        module, input_shape=input_shape, n_classes=n_classes, input_bounds=input_bounds
    )


def fit_clone(
    clone: TorchModel, x: np.ndarray, targets: np.ndarray, seed: int, settings: CloneSettings
) -> None:
    """Train `clone` in place (warm start) on soft or one-hot targets with cross-entropy."""
    gen = torch.Generator().manual_seed(seed)
    torch.manual_seed(seed)
    xt = torch.as_tensor(np.asarray(x, dtype=np.float32))
    tt = torch.as_tensor(np.asarray(targets, dtype=np.float32))
    module = clone.module
    opt = torch.optim.Adam(module.parameters(), lr=settings.lr)
    module.train()
    steps = 0
    for _ in range(settings.epochs):
        order = torch.randperm(len(xt), generator=gen)
        for start in range(0, len(xt), settings.batch_size):
            if steps == settings.max_steps:
                break
            steps += 1
            idx = order[start : start + settings.batch_size]
            opt.zero_grad()
            loss = -(tt[idx] * torch.log_softmax(module(xt[idx]), dim=1)).sum(dim=1).mean()
            loss.backward()
            opt.step()
    module.eval()


@contextlib.contextmanager
def one_torch_thread() -> Iterator[None]:
    """One intra-op torch thread for the small models attacks train: their tiny batched ops gain
    nothing from more, and on a busy machine extra threads slow them down many-fold."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)
