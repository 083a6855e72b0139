"""PGD (Madry et al. 2018): gradient steps projected onto the epsilon ball, with restarts."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from bastion.attacks.evasion._common import (
    AttackResult,
    BoundsArg,
    Box,
    LogitsFn,
    Norm,
    check_epsilon,
    check_norm,
    finish,
    generator,
    inputs_and_labels,
    misclassified,
    normalize,
    project,
    random_start,
    require_differentiable,
    resolve_box,
)
from bastion.core.errors import UsageError
from bastion.core.model import Model


def pgd_tensor(
    logits: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    box: Box,
    steps: int,
    step_size: float,
    start: bool,
    gen: torch.Generator,
) -> torch.Tensor:
    """One PGD run on cross-entropy; the loop never leaves torch."""
    x_adv = random_start(x, eps, norm, box, gen) if start else x.clone()
    for _ in range(steps):
        x_adv.requires_grad_(True)
        loss = F.cross_entropy(logits(x_adv), y, reduction="sum")
        (grad,) = torch.autograd.grad(loss, x_adv)
        with torch.no_grad():
            x_adv = project(x_adv + step_size * normalize(grad, norm), x, eps, norm, box)
    return x_adv.detach()


def pgd_restarts(
    logits: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    box: Box,
    steps: int,
    step_size: float,
    restarts: int,
    start: bool,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """PGD with restarts; each restart runs only on the inputs no earlier run broke.

    Returns the adversarial points, success, and the model evaluations spent per example
    (`steps` gradients and one check per restart the example took part in).
    """
    x_adv = x.clone()
    success = torch.zeros(len(x), dtype=torch.bool)
    queries = torch.zeros(len(x), dtype=torch.int64)
    for r in range(restarts):
        active = (~success).nonzero().squeeze(1)
        if len(active) == 0:
            break
        cand = pgd_tensor(
            logits,
            x[active],
            y[active],
            eps=eps,
            norm=norm,
            box=box,
            steps=steps,
            step_size=step_size,
            start=start or r > 0,
            gen=gen,
        )
        with torch.no_grad():
            fooled = logits(cand).argmax(dim=1) != y[active]
        x_adv[active] = cand  # keep the last attempt for survivors, the success for the broken
        success[active] = fooled
        queries[active] += steps + 1
    return x_adv, success, queries


def pgd(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    norm: str = "linf",
    steps: int = 40,
    step_size: float | None = None,
    restarts: int = 1,
    random_start: bool = True,
    bounds: BoundsArg = None,
    seed: int = 0,
) -> AttackResult:
    """Projected gradient descent on cross-entropy (step size defaults to 2.5 * epsilon / steps)."""
    logits = require_differentiable(model, "PGD")
    kind = check_norm(norm)
    if steps < 1 or restarts < 1:
        raise UsageError("steps and restarts must be at least 1", fix="pass positive integers")
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    eps = check_epsilon(epsilon, box, xt, kind)
    alpha = float(step_size) if step_size is not None else 2.5 * eps / steps
    gen = generator(seed)
    if restarts == 1:  # no restart needs to know who survived: judge success only when asked
        x_adv = pgd_tensor(
            logits,
            xt,
            yt,
            eps=eps,
            norm=kind,
            box=box,
            steps=steps,
            step_size=alpha,
            start=random_start,
            gen=gen,
        )
        return finish("pgd", kind, eps, xt, x_adv, misclassified(logits, x_adv, yt), steps + 1)
    x_adv, success, queries = pgd_restarts(
        logits,
        xt,
        yt,
        eps=eps,
        norm=kind,
        box=box,
        steps=steps,
        step_size=alpha,
        restarts=restarts,
        start=random_start,
        gen=gen,
    )
    return finish("pgd", kind, eps, xt, x_adv, success, queries)
