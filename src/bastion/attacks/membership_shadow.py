"""Shadow / reference models for membership inference, trained in parallel worker processes."""

from __future__ import annotations

import os
import pickle
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext

import numpy as np

from bastion.attacks.oracle import check_budget
from bastion.core.dataset import Dataset
from bastion.core.errors import DataError
from bastion.core.model import Model

Trainer = Callable[[Dataset, int], Model]
MIN_ROWS_PER_SHADOW = 20


@dataclass(frozen=True)
class ShadowSet:
    """Outputs of K shadow models on every pool row, and which rows each one trained on."""

    probs: np.ndarray  # (K, N, C)
    keep: np.ndarray  # (K, N) bool


def keep_matrix(n_shadow: int, n_rows: int, keep_fraction: float, seed: int) -> np.ndarray:
    """(K, N) inclusion matrix where every row is in exactly round(keep_fraction * K) shadows
    (the balanced design of Carlini et al.)."""
    rng = np.random.default_rng(seed)
    order = rng.random((n_shadow, n_rows)).argsort(axis=0)
    return order < max(1, round(keep_fraction * n_shadow))


def check_shadow_design(n_shadow: int, n_rows: int, keep_fraction: float) -> None:
    """Raise a clear error when K shadow models cannot be trained from `n_rows` rows."""
    check_budget(n_shadow, "number of shadow models")
    if not 0.0 < keep_fraction < 1.0:
        raise DataError(f"keep fraction {keep_fraction} is outside (0, 1)", fix="use e.g. 0.5")
    if n_shadow < 2:
        raise DataError(
            "at least 2 shadow models are needed (one with and one without each row)",
            fix="raise the number of shadow models",
        )
    per_shadow = keep_fraction * n_rows
    if per_shadow < MIN_ROWS_PER_SHADOW or n_rows - per_shadow < MIN_ROWS_PER_SHADOW:
        raise DataError(
            f"{n_rows} rows are too few for shadow models: each would train on "
            f"{per_shadow:.0f} rows "
            f"(at least {MIN_ROWS_PER_SHADOW} in and out are needed)",
            fix="give more training / held-out rows or use the threshold attack",
        )


def _context() -> BaseContext:
    """fork where available: no re-import of the caller's script, and torch is already loaded.
    Workers then drop to one torch thread, as PyTorch's own DataLoader workers do."""
    return get_context("fork" if "fork" in get_all_start_methods() else "spawn")


def _init_worker() -> None:
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)


def _train_and_predict(trainer: Trainer, pool: Dataset, keep: np.ndarray, seed: int) -> np.ndarray:
    model = trainer(pool.subset(np.flatnonzero(keep)), seed)
    return np.asarray(model.predict_proba(pool.x), dtype=np.float32)


def train_shadows(
    trainer: Trainer,
    pool: Dataset,
    *,
    n_shadow: int,
    keep_fraction: float = 0.5,
    seed: int,
    n_jobs: int | None = None,
    on_done: Callable[[int], None] | None = None,
) -> ShadowSet:
    """Train K models with `trainer` on random subsets of `pool`; return their outputs on all of it.

    Training runs in `n_jobs` processes (default: every core, one torch thread each); a trainer
    that cannot be pickled (a lambda, a closure) trains in this process instead.
    """
    check_shadow_design(n_shadow, len(pool), keep_fraction)
    keep = keep_matrix(n_shadow, len(pool), keep_fraction, seed)
    seeds = [seed * 1000 + 1 + k for k in range(n_shadow)]
    jobs = min(n_jobs or os.cpu_count() or 1, n_shadow)
    try:
        pickle.dumps(trainer)
    except (pickle.PicklingError, AttributeError, TypeError):
        jobs = 1
    outputs: list[np.ndarray] = []
    if jobs == 1:
        for k in range(n_shadow):
            outputs.append(_train_and_predict(trainer, pool, keep[k], seeds[k]))
            if on_done:
                on_done(k + 1)
    else:
        with ProcessPoolExecutor(
            jobs, mp_context=_context(), initializer=_init_worker
        ) as pool_exec:
            futures = [
                pool_exec.submit(_train_and_predict, trainer, pool, keep[k], seeds[k])
                for k in range(n_shadow)
            ]
            for k, fut in enumerate(futures):
                outputs.append(fut.result())
                if on_done:
                    on_done(k + 1)
    return ShadowSet(np.stack(outputs), keep)
