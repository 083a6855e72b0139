"""Shared pieces of the evasion attacks: threat model, validation, projection, losses, results."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from bastion.core.errors import DataError, UsageError
from bastion.core.model import Model, check_inputs, is_differentiable

Norm = Literal["linf", "l2"]
NORMS: tuple[str, ...] = ("linf", "l2")
BoundsArg = tuple[float | np.ndarray, float | np.ndarray] | None
LogitsFn = Callable[[torch.Tensor], torch.Tensor]
BOUNDS_TOLERANCE = 1e-5


class AttackResult:
    """What an attack returns: the examples, which ones succeeded, their distances and cost.

    `norm` is each example's perturbation size in the attack's norm; `queries` counts model
    evaluations per example (forward passes for white-box attacks, predictions for black-box).
    `success` and `norm` may be computed lazily (success costs one forward pass, paid on
    first access), so timing an attack measures the attack alone.
    """

    def __init__(
        self,
        attack: str,
        norm_kind: str,
        epsilon: float | None,
        x_adv: np.ndarray,
        success: np.ndarray | Callable[[], np.ndarray],
        norm: np.ndarray | Callable[[], np.ndarray],
        queries: np.ndarray,
    ) -> None:
        self.attack = attack
        self.norm_kind = norm_kind
        self.epsilon = epsilon
        self.x_adv = x_adv
        self._norm = norm
        self.queries = queries
        self._success = success

    @property
    def success(self) -> np.ndarray:
        if callable(self._success):
            self._success = np.asarray(self._success(), dtype=bool)
        return self._success

    @property
    def norm(self) -> np.ndarray:
        if callable(self._norm):
            self._norm = np.asarray(self._norm())
        return self._norm

    @property
    def success_rate(self) -> float:
        return float(self.success.mean()) if len(self.success) else 0.0

    def __repr__(self) -> str:
        n = len(self.norm)
        return f"AttackResult({self.attack}, {self.norm_kind}, eps={self.epsilon}, n={n})"


@dataclass(frozen=True)
class Box:
    """Element-wise valid input range, as tensors broadcastable to one batch."""

    lower: torch.Tensor
    upper: torch.Tensor

    def clamp(self, x: torch.Tensor) -> torch.Tensor:
        return torch.maximum(torch.minimum(x, self.upper), self.lower)

    @property
    def widest(self) -> float:
        return float((self.upper - self.lower).max())


def check_norm(norm: str) -> Norm:
    if norm not in NORMS:
        raise UsageError(f"unknown norm {norm!r}", fix="use 'linf' or 'l2'")
    return norm  # type: ignore[return-value]


def resolve_box(model: Model, x: torch.Tensor, bounds: BoundsArg = None) -> Box:
    """The valid input box: explicit `bounds`, else the model's declared bounds, else unbounded.

    Raises DataError when the clean inputs fall outside the box: an attack confined to it
    could not even return the clean point.
    """
    if bounds is None:
        bounds = model.input_bounds
    if bounds is None:
        inf = torch.tensor(float("inf"))
        return Box(-inf, inf)
    lo = torch.as_tensor(np.asarray(bounds[0], dtype=np.float32))
    hi = torch.as_tensor(np.asarray(bounds[1], dtype=np.float32))
    if lo.dim() > 0 and tuple(lo.shape) != tuple(x.shape[1:]):
        raise UsageError(
            f"bounds have shape {tuple(lo.shape)}, inputs {tuple(x.shape[1:])}",
            fix="give scalar bounds or arrays shaped like one input",
        )
    if bool((lo > hi).any()):
        raise UsageError("lower bound exceeds upper bound", fix="swap or correct the bounds")
    x_lo, x_hi = (x.amin(dim=0), x.amax(dim=0)) if len(x) else (lo, hi)
    if bool((x_lo < lo - BOUNDS_TOLERANCE).any() or (x_hi > hi + BOUNDS_TOLERANCE).any()):
        raise DataError(
            f"the bounds [{float(lo.min()):g}, {float(hi.max()):g}] exclude some clean inputs "
            f"(inputs span [{float(x.min()):g}, {float(x.max()):g}])",
            fix="widen the bounds to the data's valid range or rescale the data",
        )
    return Box(lo, hi)


def check_epsilon(epsilon: float, box: Box, x: torch.Tensor, norm: Norm) -> float:
    """Refuse an epsilon that is not positive or larger than the data's whole range."""
    eps = float(epsilon)
    if not np.isfinite(eps) or eps <= 0:
        raise UsageError(
            f"epsilon must be a positive number, got {epsilon!r}", fix="pass epsilon > 0"
        )
    width = box.upper - box.lower
    if not bool(torch.isfinite(width).all()):
        width = (x.amax(dim=0) - x.amin(dim=0)).clamp_min(0)
    if norm == "linf":
        limit = float(width.max())
    else:
        limit = float(torch.broadcast_to(width, x.shape[1:]).norm())
    if eps > limit:
        raise UsageError(
            f"epsilon {eps:g} exceeds the data range ({norm} size {limit:g})",
            fix=f"pick epsilon below {limit:g}; for pixels in [0, 1], 8/255 or 0.1 are usual",
        )
    return eps


def require_differentiable(model: Model, attack: str) -> LogitsFn:
    """The model's torch logits, or a UsageError naming the black-box alternative."""
    if not is_differentiable(model):
        raise UsageError(
            f"{attack} is a white-box attack and needs gradients; {type(model).__name__} has none",
            fix="use a black-box attack (square_attack, hop_skip_jump) or a torch model",
        )
    module = model.module  # type: ignore[attr-defined]
    if module.training:
        module.eval()
    return model.logits  # type: ignore[attr-defined]


def inputs_and_labels(
    model: Model, x: np.ndarray, y: np.ndarray
) -> tuple[torch.Tensor, torch.Tensor]:
    """Validated float32 inputs and int64 labels as tensors."""
    arr = check_inputs(model, x)
    labels = np.asarray(y)
    if labels.shape != (len(arr),):
        raise DataError(
            f"{len(arr)} inputs but labels of shape {labels.shape}", fix="give one label per input"
        )
    if len(labels) and (labels.min() < 0 or labels.max() >= model.n_classes):
        raise DataError(
            "labels outside 0..n_classes-1", fix="encode labels in the model's class order"
        )
    return torch.as_tensor(arr), torch.as_tensor(labels.astype(np.int64))


def flat_norm(delta: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Per-example norm of a batch of perturbations."""
    flat = delta.reshape(len(delta), -1)
    return flat.abs().amax(dim=1) if norm == "linf" else flat.norm(dim=1)


def per_example(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """Reshape a per-example vector to broadcast against a batch shaped like `like`."""
    return v.reshape(-1, *([1] * (like.dim() - 1)))


def project(
    x_adv: torch.Tensor, x: torch.Tensor, eps: float | torch.Tensor, norm: Norm, box: Box
) -> torch.Tensor:
    """Project onto the epsilon ball around `x`, then into the box.

    The box clamp never leaves the L-inf ball (both are boxes); for L2 the clamp only
    shrinks each coordinate's distance to `x`, so the result stays in the ball.
    """
    delta = x_adv - x
    if norm == "linf":
        if isinstance(eps, float):
            delta = delta.clamp(-eps, eps)
        else:
            e = per_example(eps, x)
            delta = torch.maximum(torch.minimum(delta, e), -e)
    else:
        n = per_example(flat_norm(delta, "l2"), x)
        scale = eps / (n + 1e-12) if isinstance(eps, float) else per_example(eps, x) / (n + 1e-12)
        delta = delta * torch.clamp(scale, max=1.0)
    return box.clamp(x + delta)


def normalize(g: torch.Tensor, norm: Norm) -> torch.Tensor:
    """Steepest-ascent direction for the norm: sign for L-inf, unit vector for L2."""
    if norm == "linf":
        return g.sign()
    return g / (per_example(flat_norm(g, "l2"), g) + 1e-12)


def random_start(
    x: torch.Tensor, eps: float, norm: Norm, box: Box, gen: torch.Generator
) -> torch.Tensor:
    """A uniform point in the L-inf ball, or a point on the L2 sphere, clamped to the box."""
    if norm == "linf":
        noise = (torch.rand(x.shape, generator=gen) * 2 - 1) * eps
    else:
        d = torch.randn(x.shape, generator=gen)
        noise = d / per_example(flat_norm(d, "l2"), d) * eps
    return box.clamp(x + noise)


def margin(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """z_y - max_{i != y} z_i: positive while the example is classified correctly."""
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], float("-inf")).amax(dim=1)
    return true - other


def dlr_loss(logits: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Untargeted difference-of-logits-ratio loss (Croce and Hein 2020), to be maximised."""
    z = logits.sort(dim=1).values
    return -margin(logits, y) / (z[:, -1] - z[:, -3] + 1e-12)


def dlr_targeted_loss(logits: torch.Tensor, y: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Targeted DLR loss (Croce and Hein 2020), to be maximised."""
    z = logits.sort(dim=1).values
    zy = logits.gather(1, y[:, None]).squeeze(1)
    zt = logits.gather(1, target[:, None]).squeeze(1)
    return -(zy - zt) / (z[:, -1] - 0.5 * (z[:, -3] + z[:, -4]) + 1e-12)


def misclassified(
    logits: LogitsFn, x_adv: torch.Tensor, y: torch.Tensor
) -> Callable[[], np.ndarray]:
    """A deferred judge: which rows of `x_adv` the model gets wrong (one forward, when asked)."""

    def judge() -> np.ndarray:
        with torch.no_grad():
            return (logits(x_adv).argmax(dim=1) != y).numpy()

    return judge


def generator(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(int(seed))


def finish(
    attack: str,
    norm_kind: Norm,
    epsilon: float | None,
    x: torch.Tensor,
    x_adv: torch.Tensor,
    success: torch.Tensor | Callable[[], np.ndarray],
    queries: torch.Tensor | int,
) -> AttackResult:
    """Package tensors into an AttackResult (unsuccessful rows keep their best attempt)."""
    q = queries if isinstance(queries, torch.Tensor) else torch.full((len(x),), int(queries))
    return AttackResult(
        attack=attack,
        norm_kind=norm_kind,
        epsilon=epsilon,
        x_adv=x_adv.detach().numpy(),
        success=success if callable(success) else success.numpy().astype(bool),
        norm=lambda: flat_norm((x_adv - x).detach(), norm_kind).numpy(),
        queries=q.numpy().astype(np.int64),
    )


class QueryCounter:
    """Calls a black-box Model on tensors and counts queries per example.

    The only access the black-box attacks have to the model: the plain `predict_proba`.
    """

    def __init__(self, model: Model, n: int, batch_size: int = 2048) -> None:
        self.model = model
        self.counts = torch.zeros(n, dtype=torch.int64)
        self.batch_size = batch_size

    def proba(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        """Probabilities for `x`, charging one query to each example index in `rows`."""
        self.counts.index_add_(0, rows, torch.ones(len(rows), dtype=torch.int64))
        arr = x.detach().numpy().astype(np.float32, copy=False)
        out = [
            self.model.predict_proba(arr[i : i + self.batch_size])
            for i in range(0, len(arr), self.batch_size)
        ]
        return torch.as_tensor(
            np.concatenate(out) if out else np.zeros((0, self.model.n_classes)), dtype=torch.float32
        )

    def labels(self, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
        return self.proba(x, rows).argmax(dim=1)
