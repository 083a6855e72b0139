"""One supervised training loop shared by the zoo, surrogates and fine-tuning attacks."""

from __future__ import annotations

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
) -> Any:
    """Train `module` in place with Adam on shuffled mini-batches of hard labels `y`.

    The batch order comes from a generator seeded with `seed`, so a run is reproducible
    given the module's initial weights. Returns the module, left in eval mode.
    """
    import torch

    opt = torch.optim.Adam(module.parameters(), lr=lr, weight_decay=weight_decay)
    gen = torch.Generator().manual_seed(seed)
    module.train()
    for _ in range(epochs):
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), batch_size):
            idx = order[start : start + batch_size]
            opt.zero_grad()
            torch.nn.functional.cross_entropy(module(x[idx]), y[idx]).backward()
            opt.step()
    return module.eval()
