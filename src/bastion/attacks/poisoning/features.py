"""Hidden-layer features of a torch model: what collision attacks and sanitisers look at."""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal

import numpy as np

from bastion.core.errors import UsageError
from bastion.core.model import Model, is_differentiable

if TYPE_CHECKING:
    import torch


Layer = Literal["penultimate", "embedding"]
LAYERS: tuple[Layer, ...] = ("penultimate", "embedding")


def _read_layer(module: torch.nn.Module, layer: Layer) -> torch.nn.Module:
    """The linear layer whose input is the representation asked for.

    `penultimate`: the last linear layer (its input is what the classifier head sees).
    `embedding`: the first linear layer with a learned layer before it (for a CNN, the
    flattened convolutional features; for an MLP, the first hidden layer).
    """
    from torch import nn

    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise UsageError(
            "the model has no linear output layer to read features from",
            fix="pass a torch classifier whose last layer is nn.Linear",
        )
    if layer == "penultimate":
        return linears[-1]
    learned_before = False
    for m in module.modules():
        if isinstance(m, nn.Linear) and learned_before:
            return m
        if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d | nn.Conv3d):
            learned_before = True
    return linears[-1]


def feature_tensor(model: Model, x: torch.Tensor, layer: Layer = "penultimate") -> torch.Tensor:
    """The representation `layer` of `x` (differentiable), one flat row per input."""
    if not is_differentiable(model):
        raise UsageError(
            "this step needs a torch model (white-box features)",
            fix="pass a .safetensors or builtin torch model",
        )
    captured: list[torch.Tensor] = []
    hook_on = _read_layer(model.module, layer)  # type: ignore[attr-defined]
    handle = hook_on.register_forward_hook(lambda _m, inputs, _out: captured.append(inputs[0]))
    try:
        model.logits(x)  # type: ignore[attr-defined]
    finally:
        handle.remove()
    return captured[0].flatten(1)


def features(
    model: Model, x: np.ndarray, layer: Layer = "penultimate", batch_size: int = 512
) -> np.ndarray:
    """The representation `layer` for a batch, as float64 numpy rows."""
    import torch

    chunks = []
    with torch.no_grad():
        for start in range(0, len(x), batch_size):
            batch = torch.as_tensor(np.asarray(x[start : start + batch_size], dtype=np.float32))
            chunks.append(feature_tensor(model, batch, layer).double().numpy())
    return np.concatenate(chunks) if chunks else np.zeros((0, 0))
