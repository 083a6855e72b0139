"""APGD (Croce and Hein 2020): step-size-free PGD with momentum and checkpoint halving.

Follows the paper's schedule: the first step size is 2 * epsilon; checkpoints at
w_0 = 0, w_1 = 0.22 N, w_{j+1} = w_j + max(w_j - w_{j-1} - 0.03 N, 0.06 N); at each
checkpoint an example's step size halves (and it restarts from its best point) when
fewer than 75% of the steps since the last checkpoint raised its loss, or when its
step size was not halved at the last checkpoint and its best loss has not improved since.
Losses: cross-entropy, and the targeted DLR loss against the top-k runner-up classes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

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
    dlr_loss,
    dlr_targeted_loss,
    finish,
    flat_norm,
    generator,
    inputs_and_labels,
    normalize,
    per_example,
    project,
    require_differentiable,
    resolve_box,
)
from bastion.core.errors import UsageError
from bastion.core.model import Model

Loss = Literal["ce", "dlr", "dlr-targeted"]
LossFn = Callable[[torch.Tensor, torch.Tensor, "torch.Tensor | None"], torch.Tensor]
MOMENTUM = 0.75
RHO = 0.75


def checkpoints(n_iter: int) -> list[int]:
    """The iterations at which APGD reconsiders each example's step size.

    Integer form of the schedule, as in the reference implementation: the first
    interval is 0.22 N and each next one is 0.03 N shorter, never below 0.06 N.
    """
    interval = max(int(0.22 * n_iter), 1)
    shrink = max(int(0.03 * n_iter), 1)
    shortest = max(int(0.06 * n_iter), 1)
    marks, at = [], interval
    while at <= n_iter:
        marks.append(at)
        interval = max(interval - shrink, shortest)
        at += interval
    return marks


def _start(x: torch.Tensor, eps: float, norm: Norm, box: Box, gen: torch.Generator) -> torch.Tensor:
    if norm == "linf":
        t = torch.rand(x.shape, generator=gen) * 2 - 1
        delta = eps * t / per_example(flat_norm(t, "linf"), t)
    else:
        t = torch.randn(x.shape, generator=gen)
        delta = eps * t / per_example(flat_norm(t, "l2") + 1e-12, t)
    return box.clamp(x + delta)


def _ce(z: torch.Tensor, y: torch.Tensor, _t: torch.Tensor | None) -> torch.Tensor:
    return F.cross_entropy(z, y, reduction="none")


def _dlr(z: torch.Tensor, y: torch.Tensor, _t: torch.Tensor | None) -> torch.Tensor:
    return dlr_loss(z, y)


def _dlr_targeted(z: torch.Tensor, y: torch.Tensor, t: torch.Tensor | None) -> torch.Tensor:
    assert t is not None
    return dlr_targeted_loss(z, y, t)


LOSSES: dict[str, LossFn] = {"ce": _ce, "dlr": _dlr, "dlr-targeted": _dlr_targeted}


def apgd_run(
    logits: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    loss_of: LossFn,
    target: torch.Tensor | None = None,
    *,
    eps: float,
    norm: Norm,
    box: Box,
    n_iter: int,
    gen: torch.Generator,
    stop_early: bool = True,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """One APGD run: the adversarial point (or the best-loss point where none), success,
    and the model evaluations each example took part in.

    Success means misclassification (also for the targeted loss, as in AutoAttack). With
    `stop_early`, examples already misclassified are dropped at each checkpoint, so later
    iterations only pay for the survivors.
    """
    n = len(x)
    out = x.clone()
    success = torch.zeros(n, dtype=torch.bool)
    idx = torch.arange(n)
    queries = torch.zeros(n, dtype=torch.int64)
    x0, y0, t0 = x, y, target

    def grad_and_loss(xa: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        xa = xa.clone().requires_grad_(True)
        z = logits(xa)
        loss = loss_of(z, y0, t0)
        (g,) = torch.autograd.grad(loss.sum(), xa)
        queries[idx] += 1
        return g.detach(), loss.detach(), z.detach().argmax(dim=1) != y0

    x_adv = _start(x0, eps, norm, box, gen)
    grad, loss, fooled = grad_and_loss(x_adv)
    out[fooled] = x_adv[fooled]
    success |= fooled
    x_best, grad_best, loss_best = x_adv.clone(), grad.clone(), loss.clone()
    step = torch.full((n,), 2.0 * eps)
    x_prev = x_adv.clone()
    marks = set(checkpoints(n_iter))
    last_mark = 0
    improved_count = torch.zeros(n)
    reduced_last = torch.ones(n, dtype=torch.bool)
    loss_best_last = loss_best.clone()
    for i in range(n_iter):
        with torch.no_grad():
            a = MOMENTUM if i > 0 else 1.0
            z1 = project(
                x_adv + per_example(step, x_adv) * normalize(grad, norm), x0, eps, norm, box
            )
            x_new = project(
                x_adv + a * (z1 - x_adv) + (1 - a) * (x_adv - x_prev), x0, eps, norm, box
            )
            x_prev = x_adv
            x_adv = x_new
        grad, loss_new, fooled = grad_and_loss(x_adv)
        out[idx[fooled]] = x_adv[fooled]
        success[idx[fooled]] = True
        improved_count += (loss_new > loss).float()
        loss = loss_new
        better = loss > loss_best
        x_best[better], grad_best[better], loss_best[better] = (
            x_adv[better],
            grad[better],
            loss[better],
        )
        if i + 1 in marks:
            span = i + 1 - last_mark
            oscillating = improved_count <= span * RHO
            stalled = ~reduced_last & (loss_best_last >= loss_best)
            reduce = oscillating | stalled
            step[reduce] /= 2.0
            x_adv[reduce], grad[reduce] = x_best[reduce], grad_best[reduce]
            reduced_last, loss_best_last = reduce, loss_best.clone()
            improved_count.zero_()
            last_mark = i + 1
            if stop_early:
                keep = ~success[idx]
                if not bool(keep.any()):
                    break
                idx, x0, y0 = idx[keep], x0[keep], y0[keep]
                t0 = t0[keep] if t0 is not None else None
                x_adv, x_prev, grad, loss = x_adv[keep], x_prev[keep], grad[keep], loss[keep]
                x_best, grad_best, loss_best = x_best[keep], grad_best[keep], loss_best[keep]
                step, improved_count = step[keep], improved_count[keep]
                reduced_last, loss_best_last = reduced_last[keep], loss_best_last[keep]
    alive = ~success[idx]
    out[idx[alive]] = x_best[alive]
    return out, success, queries


def apgd_tensor(
    logits: LogitsFn,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    box: Box,
    loss: Loss,
    n_iter: int,
    restarts: int,
    n_targets: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """APGD over restarts (and, for targeted DLR, over the top `n_targets` runner-up classes).

    Each further run attacks only the examples every earlier run failed on. Returns the
    adversarial points, success and the model evaluations spent per example.
    """
    x_adv = x.clone()
    success = torch.zeros(len(x), dtype=torch.bool)
    queries = torch.zeros(len(x), dtype=torch.int64)
    order: torch.Tensor | None = None
    if loss == "dlr-targeted":
        with torch.no_grad():
            order = logits(x).argsort(dim=1, descending=True)
        queries += 1
        if order.shape[1] < 4:
            raise UsageError(
                "targeted DLR needs at least 4 classes", fix="use loss='ce' for this model"
            )
        ranks = [
            t for t in range(1, min(n_targets, order.shape[1] - 1) + 1) for _ in range(restarts)
        ]
    else:
        ranks = [0] * restarts
    for rank in ranks:
        active = (~success).nonzero().squeeze(1)
        if len(active) == 0:
            break
        target = order[active, rank] if order is not None else None
        cand, fooled, spent = apgd_run(
            logits,
            x[active],
            y[active],
            LOSSES[loss],
            target,
            eps=eps,
            norm=norm,
            box=box,
            n_iter=n_iter,
            gen=gen,
        )
        x_adv[active] = cand
        success[active] = fooled
        queries[active] += spent
    return x_adv, success, queries


def apgd(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    norm: str = "linf",
    loss: str = "ce",
    n_iter: int = 100,
    restarts: int = 1,
    n_targets: int = 9,
    bounds: BoundsArg = None,
    seed: int = 0,
) -> AttackResult:
    """Auto-PGD with cross-entropy (`ce`), DLR (`dlr`) or targeted DLR (`dlr-targeted`) loss."""
    logits = require_differentiable(model, "APGD")
    kind = check_norm(norm)
    if loss not in LOSSES:
        raise UsageError(f"unknown APGD loss {loss!r}", fix=f"choose one of: {', '.join(LOSSES)}")
    if n_iter < 1 or restarts < 1 or n_targets < 1:
        raise UsageError(
            "n_iter, restarts and n_targets must be at least 1", fix="pass positive integers"
        )
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    eps = check_epsilon(epsilon, box, xt, kind)
    x_adv, success, queries = apgd_tensor(
        logits,
        xt,
        yt,
        eps=eps,
        norm=kind,
        box=box,
        loss=loss,  # type: ignore[arg-type]
        n_iter=n_iter,
        restarts=restarts,
        n_targets=n_targets,
        gen=generator(seed),
    )
    return finish(f"apgd-{loss}", kind, eps, xt, x_adv, success, queries)
