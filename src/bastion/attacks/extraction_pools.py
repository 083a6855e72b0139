"""Where extraction queries come from: uniform noise in bounds, or a natural OOD pool."""

from __future__ import annotations

import numpy as np

from bastion.core.model import Model


def feature_bounds(model: Model, attacker_x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-feature (low, high): the model's declared bounds, else the attacker data's range."""
    shape = model.input_shape
    if model.input_bounds is not None:
        lo, hi = model.input_bounds
        return np.full(shape, lo, np.float32), np.full(shape, hi, np.float32)
    return attacker_x.min(axis=0).astype(np.float32), attacker_x.max(axis=0).astype(np.float32)


def uniform_in_bounds(
    bounds: tuple[np.ndarray, np.ndarray], n: int, rng: np.random.Generator
) -> np.ndarray:
    """`n` points drawn uniformly inside the per-feature bounds."""
    lo, hi = bounds
    return (lo + rng.random((n, *lo.shape)) * (hi - lo)).astype(np.float32)


def transformed_samples(
    attacker_x: np.ndarray, bounds: tuple[np.ndarray, np.ndarray], n: int, rng: np.random.Generator
) -> np.ndarray:
    """Variations of the attacker's samples: mixup of pairs, one-pixel shifts (images), noise."""
    lo, hi = bounds
    a = attacker_x[rng.integers(0, len(attacker_x), n)].astype(np.float64)
    b = attacker_x[rng.integers(0, len(attacker_x), n)].astype(np.float64)
    lam = rng.uniform(0.6, 1.0, (n,) + (1,) * (a.ndim - 1))
    out = lam * a + (1 - lam) * b
    if out.ndim == 4:  # images: shift by up to one pixel each way
        for i in range(n):
            out[i] = np.roll(out[i], shift=tuple(rng.integers(-1, 2, 2)), axis=(1, 2))
    out += rng.normal(0.0, 0.05, out.shape) * (hi - lo)
    return np.clip(out, lo, hi).astype(np.float32)


def image_patches(input_shape: tuple[int, ...], n: int, rng: np.random.Generator) -> np.ndarray:
    """Grey-level patches of the photographs inside scikit-learn, resized to the input shape."""
    from sklearn.datasets import load_sample_images

    c, h, w = input_shape
    photos = [img.mean(axis=2) / 255.0 for img in load_sample_images().images]
    out = np.empty((n, c, h, w), np.float32)
    for i in range(n):
        photo = photos[rng.integers(len(photos))]
        size = int(rng.integers(max(h, w), 8 * max(h, w)))
        top = rng.integers(0, photo.shape[0] - size)
        left = rng.integers(0, photo.shape[1] - size)
        rows = top + (np.arange(h) + 0.5) * size / h
        cols = left + (np.arange(w) + 0.5) * size / w
        patch = photo[rows.astype(int)][:, cols.astype(int)]
        patch = (patch - patch.min()) / max(float(np.ptp(patch)), 1e-6)  # stretch contrast
        out[i] = 1.0 - patch if rng.random() < 0.5 else patch
    return out


def natural_pool(
    model: Model,
    attacker_x: np.ndarray,
    bounds: tuple[np.ndarray, np.ndarray],
    n: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """An unlabelled pool of `n` natural inputs: for image models half photograph patches
    (another data set inside scikit-learn, rescaled to the bounds) and half transformed attacker
    samples; for tabular models transformed attacker samples."""
    if len(model.input_shape) != 3:
        return transformed_samples(attacker_x, bounds, n, rng)
    lo, hi = bounds
    n_patches = n // 2
    patches = lo + image_patches(model.input_shape, n_patches, rng) * (hi - lo)
    pool = np.concatenate(
        [patches.astype(np.float32), transformed_samples(attacker_x, bounds, n - n_patches, rng)]
    )
    return pool[rng.permutation(len(pool))]
