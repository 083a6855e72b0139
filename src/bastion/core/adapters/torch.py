"""torch modules as DifferentiableModels."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch


class TorchModel:
    """An `nn.Module` returning logits, with its input shape, bounds and class names."""

    def __init__(
        self,
        module: torch.nn.Module,
        *,
        input_shape: tuple[int, ...],
        n_classes: int,
        input_bounds: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
        batch_size: int = 1024,
    ) -> None:
        self.module = module.eval()
        self.input_shape = tuple(input_shape)
        self.n_classes = n_classes
        self.input_bounds = input_bounds
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
        )
        self.batch_size = batch_size

    def logits(self, x: torch.Tensor) -> torch.Tensor:
        return self.module(x)

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        tensor = torch.as_tensor(np.asarray(x, dtype=np.float32))
        chunks = []
        with torch.no_grad():
            for start in range(0, len(tensor), self.batch_size):
                chunks.append(
                    torch.softmax(self.module(tensor[start : start + self.batch_size]), dim=1)
                )
        if not chunks:
            return np.zeros((0, self.n_classes), dtype=np.float32)
        return torch.cat(chunks).numpy()
