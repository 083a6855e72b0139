"""DAWN response watermarking: keyed, rare, deterministic; verify-clone separates a copy."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.core.errors import ConfigError, InputError
from bastion.defenses.dawn import PairLog, ResponseWatermark, read_pairs, verify_clone

KEY = b"k" * 32


class Linear:
    """A fixed linear softmax model on 4 features, 5 classes."""

    def __init__(self, seed: int) -> None:
        self.w = np.random.default_rng(seed).normal(size=(4, 5))
        self.n_classes = 5
        self.input_shape = (4,)
        self.input_bounds = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float64).reshape(len(x), -1) @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class Memorised:
    """A 'clone' that reproduces every answer it was given (a perfect extraction)."""

    def __init__(self, victim: Linear, mark: ResponseWatermark) -> None:
        self.victim, self.mark = victim, mark
        self.n_classes, self.input_shape, self.input_bounds = 5, (4,), None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        return self.mark.apply(x, self.victim.predict_proba(x))[0]


def test_fraction_must_stay_below_half_a_percent() -> None:
    with pytest.raises(ConfigError):
        ResponseWatermark(KEY, 0.005)
    with pytest.raises(ConfigError):
        ResponseWatermark(b"short", 0.001)


def test_marks_a_keyed_rare_fraction_deterministically() -> None:
    victim = Linear(0)
    x = np.random.default_rng(1).normal(size=(40000, 4)).astype(np.float32)
    mark = ResponseWatermark(KEY, 0.004)
    probs = victim.predict_proba(x)
    out, marked = mark.apply(x, probs)
    assert 0.002 < marked.watermark.mean() < 0.006
    changed = out.argmax(axis=1) != probs.argmax(axis=1)
    assert (changed == marked.watermark).all()  # exactly the marked answers changed label
    again, _ = mark.apply(x, probs)
    np.testing.assert_array_equal(out, again)
    _, other = ResponseWatermark(b"j" * 32, 0.004).apply(x, probs)
    assert (other.watermark & marked.watermark).sum() < marked.watermark.sum() / 2


def test_verify_clone_proves_a_copy_and_not_an_independent_model(tmp_path: Path) -> None:
    victim = Linear(0)
    mark = ResponseWatermark(KEY, 0.004, control_fraction=0.01)
    log = PairLog(tmp_path / "pairs.jsonl")
    x = np.random.default_rng(2).normal(size=(30000, 4)).astype(np.float32)
    _, marked = mark.apply(x, victim.predict_proba(x))
    log.append(x, marked, "m")
    pairs = read_pairs(tmp_path / "pairs.jsonl", (4,), "m")
    assert pairs.watermark.sum() == marked.watermark.sum()
    copy = verify_clone(Memorised(victim, mark), pairs)
    assert copy.proven() and copy.confidence >= 1 - 2.0**-40
    for seed in range(1, 4):
        assert not verify_clone(Linear(seed), pairs).proven()
    assert not verify_clone(victim, pairs).proven()  # the honest model never gives marked labels


def test_pairs_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"model": "m", "kind": "watermark", "label": 1, "victim": 0, "x": [1, 2]}\n')
    with pytest.raises(InputError, match=r"pairs\.jsonl:1"):
        read_pairs(path, (4,))
    with pytest.raises(InputError):
        read_pairs(tmp_path / "missing.jsonl", (4,))
