"""Carlini-Wagner L2 (2017): the smallest L2 perturbation that flips the decision.

Minimises ||delta||^2 + c * max(z_y - max_{i!=y} z_i + kappa, 0) with Adam in tanh
space (so every iterate stays in the box), binary-searching c per example. The result's
`norm` is the distance to the decision boundary found (inf where no flip was found).
"""

from __future__ import annotations

import numpy as np
import torch

from bastion.attacks.evasion._common import (
    AttackResult,
    BoundsArg,
    Box,
    LogitsFn,
    finish,
    flat_norm,
    inputs_and_labels,
    margin,
    require_differentiable,
    resolve_box,
)
from bastion.core.errors import UsageError
from bastion.core.model import Model

TANH_SHRINK = 1 - 1e-6


def cw_l2_tensor(
    logits: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    box: Box,
    steps: int,
    search_steps: int,
    c_init: float,
    lr: float,
    kappa: float,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Returns (closest adversarial point or x, success, L2 distance with inf for failures)."""
    finite = bool(torch.isfinite(box.lower).all() and torch.isfinite(box.upper).all())
    lo, hi = (box.lower, box.upper) if finite else (x.new_zeros(()), x.new_ones(()))
    width = (hi - lo).clamp_min(1e-12)
    if finite:
        w0 = torch.atanh(((x - lo) / width * 2 - 1).clamp(-TANH_SHRINK, TANH_SHRINK))
    else:
        w0 = x.clone()

    def to_input(w: torch.Tensor) -> torch.Tensor:
        return lo + (torch.tanh(w) + 1) / 2 * width if finite else w

    n = len(x)
    c = torch.full((n,), float(c_init))
    c_low = torch.zeros(n)
    c_high = torch.full((n,), float("inf"))
    best_dist = torch.full((n,), float("inf"))
    best = x.clone()
    for _ in range(search_steps):
        w = w0.clone().requires_grad_(True)
        opt = torch.optim.Adam([w], lr=lr)
        found = torch.zeros(n, dtype=torch.bool)
        for _ in range(steps):
            x_adv = to_input(w)
            z = logits(x_adv)
            dist = (x_adv - x).reshape(n, -1).pow(2).sum(dim=1)
            hinge = (margin(z, y) + kappa).clamp_min(0)
            opt.zero_grad()
            (dist + c * hinge).sum().backward()
            opt.step()
            with torch.no_grad():
                fooled = z.argmax(dim=1) != y
                d = dist.sqrt()
                better = fooled & (d < best_dist)
                best_dist[better] = d[better]
                best[better] = x_adv.detach()[better]
                found |= fooled
        c_high = torch.where(found, torch.minimum(c_high, c), c_high)
        c_low = torch.where(found, c_low, torch.maximum(c_low, c))
        c = torch.where(torch.isfinite(c_high), (c_low + c_high) / 2, c * 10)
    success = torch.isfinite(best_dist)
    return best, success, best_dist


def carlini_wagner_l2(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    steps: int = 100,
    search_steps: int = 5,
    c_init: float = 1.0,
    lr: float = 0.05,
    kappa: float = 0.0,
    bounds: BoundsArg = None,
) -> AttackResult:
    """Minimum-norm L2 attack; `norm` is the boundary distance (inf where the search failed)."""
    logits = require_differentiable(model, "Carlini-Wagner")
    if steps < 1 or search_steps < 1 or c_init <= 0 or lr <= 0:
        raise UsageError(
            "steps, search_steps, c_init and lr must be positive", fix="pass positive values"
        )
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    x_adv, success, dist = cw_l2_tensor(
        logits,
        xt,
        yt,
        box=box,
        steps=steps,
        search_steps=search_steps,
        c_init=c_init,
        lr=lr,
        kappa=kappa,
    )
    result = finish("cw-l2", "l2", None, xt, x_adv, success, steps * search_steps)
    return AttackResult(
        result.attack,
        "l2",
        None,
        result.x_adv,
        result.success,
        torch.where(success, flat_norm(x_adv - xt, "l2"), dist).numpy(),
        result.queries,
    )
