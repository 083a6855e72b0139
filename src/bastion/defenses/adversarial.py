"""Adversarial training for torch models: PGD (Madry et al. 2018) and TRADES (Zhang et al. 2019).

Returns a new model (the input is left untouched), fine-tuned from the given weights on
adversarial examples crafted against the model being trained. Epsilon ramps up linearly
over the first `warmup` fraction of epochs, which keeps clean accuracy from collapsing
early on small models.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

from bastion.attacks.evasion._common import (
    Box,
    Norm,
    check_epsilon,
    check_norm,
    inputs_and_labels,
    project,
    require_differentiable,
    resolve_box,
)
from bastion.attacks.evasion.pgd import pgd_tensor
from bastion.core.adapters.torch import TorchModel
from bastion.core.dataset import Dataset
from bastion.core.errors import UsageError
from bastion.core.model import Model

Method = Literal["pgd", "trades"]
ProgressFn = Callable[[float], None]


@dataclass(frozen=True)
class TrainingConfig:
    """How hard to train: epochs, the inner attack, and the optimiser."""

    method: Method = "pgd"
    epochs: int = 30
    steps: int = 10
    step_size: float | None = None
    beta: float = 6.0
    lr: float = 1e-3
    batch_size: int = 64
    warmup: float = 0.3
    clean_fraction: float = 0.0


def _trades_adv(
    module: torch.nn.Module,
    x: torch.Tensor,
    eps: float,
    norm: Norm,
    box: Box,
    steps: int,
    alpha: float,
    gen: torch.Generator,
) -> torch.Tensor:
    with torch.no_grad():
        p_clean = F.softmax(module(x), dim=1)
    x_adv = box.clamp(x + 0.001 * torch.randn(x.shape, generator=gen))
    for _ in range(steps):
        x_adv.requires_grad_(True)
        kl = F.kl_div(F.log_softmax(module(x_adv), dim=1), p_clean, reduction="sum")
        (g,) = torch.autograd.grad(kl, x_adv)
        with torch.no_grad():
            step = (
                g.sign()
                if norm == "linf"
                else g / (g.flatten(1).norm(dim=1).reshape(-1, *[1] * (g.dim() - 1)) + 1e-12)
            )
            x_adv = project(x_adv + alpha * step, x, eps, norm, box)
    return x_adv.detach()


def adversarial_train(
    model: Model,
    train: Dataset,
    *,
    epsilon: float,
    norm: str = "linf",
    config: TrainingConfig | None = None,
    seed: int = 0,
    progress: ProgressFn | None = None,
) -> TorchModel:
    """A copy of `model` trained to resist `epsilon` perturbations of its inputs."""
    cfg = config or TrainingConfig()
    if cfg.method not in ("pgd", "trades"):
        raise UsageError(
            f"unknown adversarial-training method {cfg.method!r}", fix="use 'pgd' or 'trades'"
        )
    if cfg.epochs < 1 or cfg.steps < 1 or cfg.batch_size < 1 or cfg.lr <= 0:
        raise UsageError(
            "epochs, steps, batch_size and lr must be positive", fix="pass positive values"
        )
    require_differentiable(model, "adversarial training")
    kind = check_norm(norm)
    x, y = inputs_and_labels(model, train.x, train.labels)
    box = resolve_box(model, x)
    eps = check_epsilon(epsilon, box, x, kind)
    inner = getattr(model, "inner", model)
    module = copy.deepcopy(model.module)  # type: ignore[attr-defined]
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.Adam(module.parameters(), lr=cfg.lr)
    warm = max(int(cfg.warmup * cfg.epochs), 1)
    for epoch in range(cfg.epochs):
        eps_now = eps * min(1.0, (epoch + 1) / warm)
        alpha = cfg.step_size if cfg.step_size is not None else 2.5 * eps_now / cfg.steps
        order = torch.randperm(len(x), generator=gen)
        for start in range(0, len(x), cfg.batch_size):
            idx = order[start : start + cfg.batch_size]
            xb, yb = x[idx], y[idx]
            module.eval()  # craft against fixed dropout/batch-norm statistics
            if cfg.method == "pgd":
                xa = pgd_tensor(
                    module,
                    xb,
                    yb,
                    eps=eps_now,
                    norm=kind,
                    box=box,
                    steps=cfg.steps,
                    step_size=alpha,
                    start=True,
                    gen=gen,
                )
            else:
                xa = _trades_adv(module, xb, eps_now, kind, box, cfg.steps, alpha, gen)
            module.train()
            opt.zero_grad()
            if cfg.method == "pgd":
                loss = F.cross_entropy(module(xa), yb)
                if cfg.clean_fraction > 0:
                    loss = (1 - cfg.clean_fraction) * loss + cfg.clean_fraction * F.cross_entropy(
                        module(xb), yb
                    )
            else:
                logits_clean = module(xb)
                kl = F.kl_div(
                    F.log_softmax(module(xa), dim=1),
                    F.softmax(logits_clean, dim=1),
                    reduction="batchmean",
                )
                loss = F.cross_entropy(logits_clean, yb) + cfg.beta * kl
            loss.backward()
            opt.step()
        if progress is not None:
            progress((epoch + 1) / cfg.epochs)
    module.eval()
    return TorchModel(
        module,
        input_shape=tuple(model.input_shape),
        n_classes=model.n_classes,
        input_bounds=model.input_bounds,
        class_names=getattr(inner, "class_names", None),
    )


def accuracy(model: Model, x: np.ndarray, y: np.ndarray) -> float:
    """Clean top-1 accuracy."""
    return float((model.predict_proba(x).argmax(axis=1) == y).mean()) if len(y) else 0.0
