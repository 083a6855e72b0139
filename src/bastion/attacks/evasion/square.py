"""Square Attack (Andriushchenko et al. 2020): score-based random search with square updates.

Black-box: it sees only `predict_proba` and counts every query. L-inf follows the
paper (vertical-stripe start, square windows set to +-epsilon per channel, the p
schedule rescaled to the query budget). L2 uses the same schedule and windows: each
proposal adds a centred bump of random sign to one square and rescales the whole
perturbation back onto the epsilon sphere.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from bastion.attacks.evasion._common import (
    AttackResult,
    BoundsArg,
    Box,
    Norm,
    QueryCounter,
    check_epsilon,
    check_norm,
    finish,
    flat_norm,
    generator,
    inputs_and_labels,
    per_example,
    project,
    resolve_box,
)
from bastion.core.errors import UsageError
from bastion.core.model import Model

SCHEDULE = (
    (10, 1),
    (50, 2),
    (200, 4),
    (500, 8),
    (1000, 16),
    (2000, 32),
    (4000, 64),
    (6000, 128),
    (8000, 256),
)


def p_selection(p_init: float, it: int, n_queries: int) -> float:
    """Fraction of pixels in the square at iteration `it` (the paper's schedule on 10k queries)."""
    scaled = int(it / n_queries * 10000)
    divisor = 512
    for limit, div in SCHEDULE:
        if scaled <= limit:
            divisor = div
            break
    return p_init / divisor


def _as_image(x: torch.Tensor) -> torch.Tensor:
    """View inputs as (N, C, H, W); vectors become (N, 1, 1, D) rows of 'pixels'."""
    if x.dim() == 4:
        return x
    if x.dim() == 3:
        return x[:, None]
    return x.reshape(len(x), 1, 1, -1)


def _margin_loss(probs: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    logp = probs.clamp_min(1e-30).log()
    true = logp.gather(1, y[:, None]).squeeze(1)
    other = logp.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - other


def _windows(n: int, h: int, w: int, s: int, gen: torch.Generator) -> torch.Tensor:
    """Boolean masks (n, 1, h, w) of one random s-by-s square per example."""
    sh, sw = min(s, h), min(s, w)
    top = torch.randint(0, h - sh + 1, (n,), generator=gen)
    left = torch.randint(0, w - sw + 1, (n,), generator=gen)
    rows = torch.arange(h)[None, :]
    cols = torch.arange(w)[None, :]
    in_rows = (rows >= top[:, None]) & (rows < top[:, None] + sh)
    in_cols = (cols >= left[:, None]) & (cols < left[:, None] + sw)
    return (in_rows[:, :, None] & in_cols[:, None, :])[:, None]


REDRAWS = 8


def _linf_proposal(
    xa: torch.Tensor,
    xb: torch.Tensor,
    mask: torch.Tensor,
    eps: float,
    box: Box,
    gen: torch.Generator,
) -> torch.Tensor:
    """Set the window to +-epsilon per channel; signs that change nothing are redrawn,
    as in the paper's reference code (bounded here: a window pinned by the box stays put)."""
    n, c = xa.shape[:2]
    signs = torch.randint(0, 2, (n, c, 1, 1), generator=gen).float() * 2 - 1
    cand = project(torch.where(mask, xa + eps * signs, xb), xa, eps, "linf", box)
    for _ in range(REDRAWS):
        same = (cand == xb).flatten(1).all(dim=1)
        if not bool(same.any()):
            break
        redrawn = torch.randint(0, 2, (int(same.sum()), c, 1, 1), generator=gen).float() * 2 - 1
        signs[same] = redrawn
        step = torch.where(mask[same], xa[same] + eps * redrawn, xb[same])
        cand[same] = project(step, xa[same], eps, "linf", box)
    return cand


def _l2_proposal(
    xa: torch.Tensor,
    xb: torch.Tensor,
    mask: torch.Tensor,
    s: int,
    eps: float,
    box: Box,
    gen: torch.Generator,
) -> torch.Tensor:
    """A centred bump of random sign on the window, rescaled back onto the epsilon sphere."""
    signs = torch.randint(0, 2, (len(xa), xa.shape[1], 1, 1), generator=gen).float() * 2 - 1
    cand = project(xb + mask.float() * signs * eps / s, xa, eps, "l2", box)
    delta = cand - xa
    cand = xa + delta / per_example(flat_norm(delta, "l2") + 1e-12, delta) * eps
    return project(cand, xa, eps, "l2", box)


def square_tensor(
    counter: QueryCounter,
    x: torch.Tensor,
    y: torch.Tensor,
    *,
    eps: float,
    norm: Norm,
    box: Box,
    n_queries: int,
    p_init: float,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Random search on the margin loss; stops querying an example once it is misclassified."""
    shape = x.shape
    xi = _as_image(x)
    n, c, h, w = xi.shape
    lo = _as_image(torch.broadcast_to(box.lower, shape[1:])[None])
    hi = _as_image(torch.broadcast_to(box.upper, shape[1:])[None])
    ibox = Box(lo, hi)
    rows = torch.arange(n)
    if norm == "linf":
        stripes = torch.randint(0, 2, (n, c, 1, w), generator=gen).float() * 2 - 1
        x_best = ibox.clamp(xi + eps * stripes)
    else:
        d = torch.randn(xi.shape, generator=gen)
        x_best = project(xi + d / per_example(flat_norm(d, "l2"), d) * eps, xi, eps, "l2", ibox)
    loss = _margin_loss(counter.proba(x_best.reshape(shape), rows), y)
    for it in range(n_queries - 1):
        active = (loss > 0).nonzero().squeeze(1)
        if len(active) == 0:
            break
        xa, xb = xi[active], x_best[active]
        p = p_selection(p_init, it, n_queries)
        s = max(round(math.sqrt(p * h * w)), 1)
        mask = _windows(len(active), h, w, s, gen)
        if norm == "linf":
            cand = _linf_proposal(xa, xb, mask, eps, ibox, gen)
        else:
            cand = _l2_proposal(xa, xb, mask, s, eps, ibox, gen)
        moved = (cand != xb).flatten(1).any(dim=1)  # a no-op proposal is not worth a query
        if not bool(moved.any()):
            continue
        active, cand = active[moved], cand[moved]
        new_loss = _margin_loss(counter.proba(cand.reshape(-1, *shape[1:]), active), y[active])
        better = new_loss < loss[active]
        x_best[active[better]] = cand[better]
        loss[active[better]] = new_loss[better]
    return x_best.reshape(shape), loss <= 0


def square_attack(
    model: Model,
    x: np.ndarray,
    y: np.ndarray,
    *,
    epsilon: float,
    norm: str = "linf",
    n_queries: int = 1000,
    p_init: float | None = None,
    bounds: BoundsArg = None,
    seed: int = 0,
) -> AttackResult:
    """Square Attack through the plain Model contract; `queries` counts predictions per example."""
    kind = check_norm(norm)
    if n_queries < 1:
        raise UsageError("n_queries must be at least 1", fix="pass a positive query budget")
    xt, yt = inputs_and_labels(model, x, y)
    box = resolve_box(model, xt, bounds)
    eps = check_epsilon(epsilon, box, xt, kind)
    counter = QueryCounter(model, len(xt))
    p = p_init if p_init is not None else 0.8
    x_adv, success = square_tensor(
        counter,
        xt,
        yt,
        eps=eps,
        norm=kind,
        box=box,
        n_queries=n_queries,
        p_init=p,
        gen=generator(seed),
    )
    return finish("square", kind, eps, xt, x_adv, success, counter.counts)
