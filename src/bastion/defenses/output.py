"""Output defences: `Model` wrappers that reveal less in each answer.

Each wraps a `Model` and is itself one, so the gateway serves it and `bastion assess` measures
it with the same code. All keep the top-1 label (the answer a benign client needs) except
`BoundaryRandomizedResponse`, whose point is to flip labels near the decision boundary.
Randomness is keyed by the input bytes, so repeating a query returns the same answer and
averaging repeats removes nothing.
"""

from __future__ import annotations

import hashlib
import hmac

import numpy as np

from bastion.core.errors import ConfigError
from bastion.core.model import Model

OUTPUT_DEFENCES = ("none", "top-k", "rounding", "label-only", "gaussian", "reverse-sigmoid", "bdpl")


class _Wrapper:
    """Shared plumbing: copy the model's signature, transform its probabilities."""

    def __init__(self, model: Model) -> None:
        self.inner = model
        self.n_classes = model.n_classes
        self.input_shape = model.input_shape
        self.input_bounds = model.input_bounds

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        arr = np.asarray(x, dtype=np.float32)
        return self.transform(arr, np.asarray(self.inner.predict_proba(arr), dtype=np.float64))

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        raise NotImplementedError


def input_uniforms(x: np.ndarray, key: bytes, n: int) -> np.ndarray:
    """`n` uniforms in [0, 1) per row, derived from HMAC(key, row bytes): same query, same draw."""
    rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
    out = np.empty((len(rows), n))
    for i, row in enumerate(rows):
        seed = int.from_bytes(hmac.new(key, row.tobytes(), hashlib.sha256).digest()[:8], "big")
        out[i] = np.random.default_rng(seed).random(n)
    return out


def keep_top1(original: np.ndarray, perturbed: np.ndarray) -> np.ndarray:
    """Swap entries so each row's arg-max is the original's, then renormalise."""
    out = np.clip(perturbed, 1e-12, None)
    top = original.argmax(axis=1)
    now = out.argmax(axis=1)
    rows = np.flatnonzero(top != now)
    a, b = out[rows, top[rows]].copy(), out[rows, now[rows]].copy()
    out[rows, top[rows]], out[rows, now[rows]] = b, a
    every = np.arange(len(out))
    tied = (out >= out[every, top][:, None]).sum(axis=1) > 1  # e.g. all entries clipped
    out[every[tied], top[tied]] += 1e-6
    return out / out.sum(axis=1, keepdims=True)


class TopK(_Wrapper):
    """Only the k largest probabilities survive (renormalised); the rest are zero."""

    def __init__(self, model: Model, k: int = 1) -> None:
        super().__init__(model)
        if not 1 <= k <= model.n_classes:
            raise ConfigError(f"top-k needs 1 <= k <= {model.n_classes}, got {k}", fix="set k")
        self.k = k

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        cut = np.sort(probs, axis=1)[:, -self.k][:, None]
        kept = np.where(probs >= cut, probs, 0.0)
        return kept / kept.sum(axis=1, keepdims=True)


class Rounding(_Wrapper):
    """Probabilities rounded to `decimals` places (the top-1 entry absorbs the rounding error)."""

    def __init__(self, model: Model, decimals: int = 1) -> None:
        super().__init__(model)
        if not 0 <= decimals <= 6:
            raise ConfigError(f"rounding decimals must be 0..6, got {decimals}", fix="set 0..6")
        self.decimals = decimals

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        out = np.round(probs, self.decimals)
        rows, top = np.arange(len(out)), probs.argmax(axis=1)
        # ties after rounding: the original top-1 gets one more unit of the last place
        tie = (out >= out[rows, top][:, None]).sum(axis=1) > 1
        out[rows[tie], top[tie]] += 10.0**-self.decimals
        return out / out.sum(axis=1, keepdims=True)


class LabelOnly(_Wrapper):
    """A one-hot vector for the top-1 class: the class and nothing else."""

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        return np.eye(self.n_classes)[probs.argmax(axis=1)]


class GaussianNoise(_Wrapper):
    """Keyed Gaussian noise of scale `sigma` on the probabilities, top-1 kept."""

    def __init__(self, model: Model, sigma: float = 0.1, key: bytes = b"bastion") -> None:
        super().__init__(model)
        if sigma <= 0:
            raise ConfigError(f"gaussian sigma must be > 0, got {sigma}", fix="set sigma > 0")
        self.sigma = sigma
        self.key = key

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        u = input_uniforms(x, self.key, 2 * self.n_classes)
        u1, u2 = np.clip(u[:, : self.n_classes], 1e-12, 1.0), u[:, self.n_classes :]
        normal = np.sqrt(-2.0 * np.log(u1)) * np.cos(2.0 * np.pi * u2)  # Box-Muller
        return keep_top1(probs, probs + self.sigma * normal)


class ReverseSigmoid(_Wrapper):
    """Lee et al. 2019: p' = alpha * (p - beta * (sigmoid(gamma * logit(p)) - 1/2)), top-1 kept.

    The perturbation is largest where the probability carries most information for a clone's
    loss, and it makes the mapping from logits to answers non-invertible. An entry pushed below
    zero (a confident top-1 with a large beta) is clipped to 0 and alpha renormalises the row,
    as in the paper; reflecting it (abs) would hand back mass the defence meant to remove.
    """

    def __init__(self, model: Model, beta: float = 0.7, gamma: float = 0.4) -> None:
        super().__init__(model)
        if beta <= 0 or gamma <= 0:
            raise ConfigError("reverse sigmoid needs beta > 0 and gamma > 0", fix="set both > 0")
        self.beta = beta
        self.gamma = gamma

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        p = np.clip(probs, 1e-7, 1.0 - 1e-7)
        logit = np.log(p / (1.0 - p))
        reverse = 1.0 / (1.0 + np.exp(-self.gamma * logit)) - 0.5
        out = np.clip(p - self.beta * reverse, 0.0, 1.0)
        return keep_top1(probs, out / out.sum(axis=1, keepdims=True))


class BoundaryRandomizedResponse(_Wrapper):
    """BDPL (Zheng et al. 2019): inside the boundary zone (top-1 minus top-2 margin below
    `delta`) the label is flipped to the runner-up with probability 1 / (1 + e^epsilon),
    consistently per input; answers are returned as labels so the margin itself is hidden."""

    def __init__(
        self, model: Model, epsilon: float = 1.0, delta: float = 0.2, key: bytes = b"bastion"
    ) -> None:
        super().__init__(model)
        if epsilon <= 0 or not 0 < delta <= 1:
            raise ConfigError("BDPL needs epsilon > 0 and 0 < delta <= 1", fix="set both")
        self.epsilon = epsilon
        self.delta = delta
        self.key = key

    def transform(self, x: np.ndarray, probs: np.ndarray) -> np.ndarray:
        order = np.argsort(probs, axis=1)
        top, second = order[:, -1], order[:, -2]
        rows = np.arange(len(probs))
        margin = probs[rows, top] - probs[rows, second]
        flip_p = 1.0 / (1.0 + np.exp(self.epsilon))
        flip = (margin < self.delta) & (input_uniforms(x, self.key, 1)[:, 0] < flip_p)
        return np.eye(self.n_classes)[np.where(flip, second, top)]


def output_defence(model: Model, name: str, key: bytes = b"bastion", **params: float) -> Model:
    """The named defence around `model` (`none` returns the model itself)."""
    if name == "none":
        return model
    if name == "top-k":
        return TopK(model, int(params.get("k", 1)))
    if name == "rounding":
        return Rounding(model, int(params.get("decimals", 1)))
    if name == "label-only":
        return LabelOnly(model)
    if name == "gaussian":
        return GaussianNoise(model, float(params.get("sigma", 0.1)), key)
    if name == "reverse-sigmoid":
        return ReverseSigmoid(
            model, float(params.get("beta", 0.7)), float(params.get("gamma", 0.4))
        )
    if name == "bdpl":
        return BoundaryRandomizedResponse(
            model, float(params.get("epsilon", 1.0)), float(params.get("delta", 0.2)), key
        )
    raise ConfigError(
        f"unknown output defence {name!r}", fix=f"choose from: {', '.join(OUTPUT_DEFENCES)}"
    )
