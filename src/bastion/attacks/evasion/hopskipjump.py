"""HopSkipJump (Chen, Jordan and Wainwright 2020): decision-based L2 attack from labels alone.

Starts from a misclassified random point, then alternates a binary search to the
decision boundary, a Monte-Carlo estimate of the boundary's normal from label flips,
and a geometric step along it. All examples advance together in batched queries;
every label request is counted against the example it serves.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bastion.attacks.evasion._common import (
    AttackResult,
    BoundsArg,
    Box,
    QueryCounter,
    finish,
    flat_norm,
    generator,
    inputs_and_labels,
    per_example,
    resolve_box,
)
from bastion.core.errors import UsageError
from bastion.core.model import Model

INIT_TRIES = 100


def _adversarial(
    counter: QueryCounter, x: torch.Tensor, y: torch.Tensor, rows: torch.Tensor
) -> torch.Tensor:
    return counter.labels(x, rows) != y


def _binary_search(
    counter: QueryCounter,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    y: torch.Tensor,
    rows: torch.Tensor,
    theta: float,
) -> torch.Tensor:
    """Slide each adversarial point toward its clean input until within theta of the boundary."""
    low = torch.zeros(len(x))
    high = torch.ones(len(x))
    while True:
        open_ = (high - low) > theta
        if not bool(open_.any()):
            break
        i = open_.nonzero().squeeze(1)
        mid = (low[i] + high[i]) / 2
        blend = x[i] + per_example(mid, x[i]) * (x_adv[i] - x[i])
        adv = _adversarial(counter, blend, y[i], rows[i])
        high[i] = torch.where(adv, mid, high[i])
        low[i] = torch.where(adv, low[i], mid)
    return x + per_example(high, x) * (x_adv - x)


def _initial(
    counter: QueryCounter, x: torch.Tensor, y: torch.Tensor, box: Box, gen: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """A misclassified uniform-noise point in the box per example (where one is found)."""
    lo = torch.broadcast_to(box.lower, x.shape[1:])
    hi = torch.broadcast_to(box.upper, x.shape[1:])
    if not bool(torch.isfinite(lo).all() and torch.isfinite(hi).all()):
        lo, hi = x.amin(dim=0), x.amax(dim=0)
    start = x.clone()
    found = torch.zeros(len(x), dtype=torch.bool)
    rows = torch.arange(len(x))
    for _ in range(INIT_TRIES):
        i = (~found).nonzero().squeeze(1)
        if len(i) == 0:
            break
        noise = lo + torch.rand((len(i), *x.shape[1:]), generator=gen) * (hi - lo)
        adv = _adversarial(counter, noise, y[i], rows[i])
        start[i[adv]] = noise[adv]
        found[i[adv]] = True
    return start, found


def hsja_tensor(
    counter: QueryCounter,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    box: Box,
    iterations: int,
    init_evals: int,
    max_evals: int,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Returns (closest adversarial point found or x, success)."""
    n = len(x)
    d = int(np.prod(x.shape[1:]))
    theta = 1.0 / (math.sqrt(d) * d)
    rows = torch.arange(n)
    x_adv, found = _initial(counter, x, y, box, gen)
    act = found.nonzero().squeeze(1)
    if len(act) == 0:
        return x.clone(), found
    xa, ya, ra = x[act], y[act], rows[act]
    cur = _binary_search(counter, xa, x_adv[act], ya, ra, theta)
    for t in range(1, iterations + 1):
        dist = flat_norm(cur - xa, "l2")
        delta = (math.sqrt(d) * theta * dist).clamp_min(1e-6)
        k = min(int(init_evals * math.sqrt(t)), max_evals)
        u = torch.randn((len(act), k, *x.shape[1:]), generator=gen)
        u = u / flat_norm(u.reshape(len(act) * k, *x.shape[1:]), "l2").reshape(
            len(act), k, *([1] * (x.dim() - 1))
        )
        probe = box.clamp(cur[:, None] + delta.reshape(-1, 1, *([1] * (x.dim() - 1))) * u)
        flat_probe = probe.reshape(len(act) * k, *x.shape[1:])
        phi = _adversarial(
            counter, flat_probe, ya.repeat_interleave(k), ra.repeat_interleave(k)
        ).float()
        phi = (phi * 2 - 1).reshape(len(act), k)
        mean = phi.mean(dim=1, keepdim=True)
        centred = torch.where((mean.abs() == 1), phi, phi - mean)
        grad = (centred.reshape(len(act), k, *([1] * (x.dim() - 1))) * (probe - cur[:, None])).mean(
            dim=1
        )
        grad = grad / per_example(flat_norm(grad, "l2") + 1e-12, grad)
        step = dist / math.sqrt(t)
        pending = torch.ones(len(act), dtype=torch.bool)
        nxt = cur.clone()
        for _ in range(25):
            i = pending.nonzero().squeeze(1)
            if len(i) == 0:
                break
            cand = box.clamp(cur[i] + per_example(step[i], cur[i]) * grad[i])
            ok = _adversarial(counter, cand, ya[i], ra[i])
            nxt[i[ok]] = cand[ok]
            pending[i[ok]] = False
            step[i[~ok]] /= 2
        cur = _binary_search(counter, xa, nxt, ya, ra, theta)
    out = x.clone()
    out[act] = cur
    return out, found


def hop_skip_jump(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    iterations: int = 20,
    init_evals: int = 100,
    max_evals: int = 1000,
    bounds: BoundsArg = None,
    seed: int = 0,
) -> AttackResult:
    """Label-only minimum-L2 attack; `norm` is the distance reached, `queries` the labels asked."""
    if iterations < 0 or init_evals < 1 or max_evals < init_evals:
        raise UsageError(
            "need iterations >= 0 and 1 <= init_evals <= max_evals", fix="adjust the budget"
        )
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    counter = QueryCounter(model, len(xt))
    x_adv, success = hsja_tensor(
        counter,
        xt,
        yt,
        box=box,
        iterations=iterations,
        init_evals=init_evals,
        max_evals=max_evals,
        gen=generator(seed),
    )
    return finish("hopskipjump", "l2", None, xt, x_adv, success, counter.counts)
