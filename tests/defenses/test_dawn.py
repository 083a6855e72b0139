"""DAWN response watermarking: keyed, rare, deterministic; verify-clone separates a copy."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from bastion.core.errors import ConfigError, InputError
from bastion.defenses.dawn import PairLog, Pairs, ResponseWatermark, read_pairs, verify_clone

KEY = b"k" * 32


class Linear:
    """A fixed linear softmax model on 4 features (5 classes unless told)."""

    def __init__(self, seed: int, n_classes: int = 5) -> None:
        self.w = np.random.default_rng(seed).normal(size=(4, n_classes))
        self.n_classes = n_classes
        self.input_shape = (4,)
        self.input_bounds = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        z = np.asarray(x, np.float64).reshape(len(x), -1) @ self.w
        e = np.exp(z - z.max(axis=1, keepdims=True))
        return e / e.sum(axis=1, keepdims=True)


class Memorised:
    """A 'clone' that reproduces every answer it was given (a perfect extraction); with `seen`,
    only the answers to those inputs (one client's share of the traffic), our model elsewhere."""

    def __init__(
        self, victim: Linear, mark: ResponseWatermark, seen: np.ndarray | None = None
    ) -> None:
        self.victim, self.mark = victim, mark
        self.seen = None if seen is None else {row.tobytes() for row in seen}
        self.n_classes, self.input_shape, self.input_bounds = victim.n_classes, (4,), None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        honest = self.victim.predict_proba(x)
        answered = self.mark.apply(x, honest)[0]
        if self.seen is None:
            return answered
        asked = np.array([row.tobytes() in self.seen for row in np.asarray(x, np.float32)])
        return np.where(asked[:, None], answered, honest)


class Flipped:
    """A model built without our answers: our model with the label flipped on chosen inputs."""

    def __init__(self, victim: Linear, flip: Callable[[np.ndarray], bool]) -> None:
        self.victim, self.flip = victim, flip
        self.n_classes, self.input_shape, self.input_bounds = 2, (4,), None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        probs = self.victim.predict_proba(x)
        rows = np.asarray(x, np.float32)
        flip = np.array([self.flip(row) for row in rows], bool)
        probs[flip] = probs[flip][:, ::-1]
        return probs


def record(tmp_path: Path, mark: ResponseWatermark, victim: Linear, x: np.ndarray) -> Pairs:
    """Answer `x` through the watermark, record the pairs, and read them back."""
    _, marked = mark.apply(x, victim.predict_proba(x))
    PairLog(tmp_path / "pairs.jsonl").append(x, marked, "m")
    return read_pairs(tmp_path / "pairs.jsonl", (4,), "m")


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


def test_binary_clone_of_one_clients_share_is_proven(tmp_path: Path) -> None:
    # two classes: an independent model "matches" a watermark label wherever it disagrees with
    # us, so the proof rests on the clone disagreeing on watermark pairs and not on controls
    victim = Linear(0, n_classes=2)
    mark = ResponseWatermark(KEY, 0.004, control_fraction=0.01)
    x = np.random.default_rng(2).normal(size=(40000, 4)).astype(np.float32)
    pairs = record(tmp_path, mark, victim, x)
    clone = Memorised(victim, mark, seen=x[:10000])  # the thief asked a quarter of the traffic
    verdict = verify_clone(clone, pairs)
    assert verdict.matches < verdict.pairs / 2
    assert verdict.proven() and verdict.confidence >= 1 - 2.0**-40
    for seed in range(1, 4):
        assert not verify_clone(Linear(seed, n_classes=2), pairs).proven()
    assert verify_clone(victim, pairs).log2_p_value == 0.0


def test_a_repeated_query_is_one_coin(tmp_path: Path) -> None:
    # one marked input asked 300 times by a benign client is one keyed coin, not 300: a model
    # that happens to disagree with us there must not be "proven"
    victim = Linear(0, n_classes=2)
    mark = ResponseWatermark(KEY, 0.004, control_fraction=0.01)
    x = np.random.default_rng(3).normal(size=(20000, 4)).astype(np.float32)
    _, marked = mark.apply(x, victim.predict_proba(x))
    star = x[np.flatnonzero(marked.watermark)[0]]
    pairs = record(tmp_path, mark, victim, np.concatenate([x, np.repeat(star[None], 300, 0)]))
    verdict = verify_clone(Flipped(victim, lambda row: row.tobytes() == star.tobytes()), pairs)
    assert verdict.pairs == marked.watermark.sum() and verdict.matches == 1
    assert verdict.log2_p_value > -5


def test_the_null_is_not_anticonservative(tmp_path: Path) -> None:
    # key-independent models disagreeing with us at random (5% to 60% of inputs): the p-value
    # must be at least uniform, so P[p <= 1/16] <= 1/16 (plus sampling slack)
    victim = Linear(0, n_classes=2)
    mark = ResponseWatermark(KEY, 0.004, control_fraction=0.01)
    x = np.random.default_rng(4).normal(size=(30000, 4)).astype(np.float32)
    pairs = record(tmp_path, mark, victim, x)
    rng = np.random.default_rng(5)
    small = []
    for trial in range(200):
        rate, salt = rng.uniform(0.05, 0.6), trial.to_bytes(4, "big")

        def flip(row: np.ndarray, rate: float = rate, salt: bytes = salt) -> bool:
            digest = hashlib.blake2b(salt + row.tobytes(), digest_size=8).digest()
            return int.from_bytes(digest, "big") / 2.0**64 < rate

        small.append(verify_clone(Flipped(victim, flip), pairs).log2_p_value <= -4)
    assert sum(small) <= 200 / 16 + 3 * np.sqrt(200 / 16)


def test_pairs_record_our_confidence_and_unsure_inputs_do_not_dilute(tmp_path: Path) -> None:
    victim = Linear(0, n_classes=2)
    mark = ResponseWatermark(KEY, 0.004, control_fraction=0.01)
    x = np.random.default_rng(6).normal(size=(40000, 4)).astype(np.float32) * 3
    pairs = record(tmp_path, mark, victim, x)
    np.testing.assert_allclose(pairs.victim_p, victim.predict_proba(pairs.x).max(axis=1), 1e-5)
    unsure = pairs.victim_p < 0.9
    assert 0.2 < unsure.mean() < 0.8

    def coin(row: np.ndarray) -> bool:  # a clone that is also unsure where we are: it
        p = victim.predict_proba(row[None])[0].max()  # disagrees on half of those inputs
        return bool(p < 0.9 and hashlib.blake2b(row.tobytes()).digest()[0] < 128)

    clone = Memorised(victim, mark, seen=x[:12000])
    suspect = Flipped(clone, coin)  # type: ignore[arg-type]
    stratified = verify_clone(suspect, pairs)
    pooled = verify_clone(suspect, replace(pairs, victim_p=np.full(len(pairs.x), np.nan)))
    assert stratified.log2_p_value < pooled.log2_p_value - 10
    assert stratified.proven()


def test_recorded_labels_must_fit_the_suspect(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    line = '{{"model": "m", "kind": "watermark", "label": {}, "victim": 0, "x": [1, 2, 3, 4]}}\n'
    for label in (0, 7):  # our own label as a "watermark", or a class the suspect lacks
        path.write_text(line.format(label))
        with pytest.raises(InputError):
            verify_clone(Linear(1), read_pairs(path, (4,)))


def test_pairs_file_errors_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_text('{"model": "m", "kind": "watermark", "label": 1, "victim": 0, "x": [1, 2]}\n')
    with pytest.raises(InputError, match=r"pairs\.jsonl:1"):
        read_pairs(path, (4,))
    with pytest.raises(InputError):
        read_pairs(tmp_path / "missing.jsonl", (4,))
