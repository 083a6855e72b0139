"""One supervised training loop shared by the zoo, surrogates and fine-tuning attacks."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any


def fit_cross_entropy(
    module: Any,
    x: Any,
    y: Any,
    *,
    epochs: int,
    lr: float,
    batch_size: int,
    seed: int,
    weight_decay: float = 0.0,
    extra_rows: Callable[[Any], tuple[Any, Any]] | None = None,
) -> Any:
    """Train `module` in place with Adam on shuffled mini-batches of hard labels `y`.

    The batch order comes from a generator seeded with `seed`, so a run is reproducible
    given the module's initial weights. `extra_rows(generator)`, if given, returns inputs
    and labels appended to every batch (drawn from the same generator). Returns the module,
    left in eval mode.
    """
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            bx, by = x[idx], y[idx]
            if extra_rows is not None:
                ex, ey = extra_rows(gen)
                bx, by = torch.cat([bx, ex]), torch.cat([by, ey])
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(bx), by).backward()
            opt.step()
    return module.eval()
