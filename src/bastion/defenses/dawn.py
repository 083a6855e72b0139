"""DAWN response watermarking (Szyller et al. 2021): prove that a model was extracted from ours.

For a secret, keyed fraction of queries (< 0.5%) the answer's label is deterministically
replaced by a keyed wrong label, and the (input, watermark label) pair is recorded. A clone
trained on our answers learns those pairs; an independent model does not. A keyed control
sample (answered honestly, also recorded) shows where the suspect disagrees with us anyway:
`verify_clone` asks whether its disagreements fall on the watermark pairs more often than a
keyed coin would put them there (an exact conditional test, see docs/serving-defences.md).

Selection and labels are HMACs of the input bytes, so the same query always gets the same
answer (no averaging out) and nobody without the key can tell which answers are marked.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from bastion.core.errors import ConfigError, InputError
from bastion.core.model import Model, predict_labels

MAX_FRACTION = 0.005
CONFIDENCE_EDGES = (0.9, 0.99)  # strata of our model's probability for its own answer
WEIGHT_SCALE = 4  # stratum weights in quarter bits
SUPPORT_LIMIT = 200_000  # values of the convolved null law before weights get coarser
NEGLIGIBLE = 1e-40  # null terms below this are dropped and their mass added to the p-value


def _u64(key: bytes, tag: bytes, row: np.ndarray) -> int:
    return int.from_bytes(hmac.new(key, tag + row.tobytes(), hashlib.sha256).digest()[:8], "big")


@dataclass(frozen=True)
class Marked:
    """Which rows were watermarked or sampled as controls, and the labels answered."""

    watermark: np.ndarray  # bool per row
    control: np.ndarray  # bool per row
    labels: np.ndarray  # the answered label per row (watermark label where marked)
    victim: np.ndarray  # the model's own label per row
    victim_p: np.ndarray  # the model's probability for its own label per row


class ResponseWatermark:
    """Keyed selection of answers to alter; `apply` alters them and reports what to record."""

    def __init__(
        self, key: bytes, fraction: float = 0.0025, control_fraction: float = 0.01
    ) -> None:
        if len(key) < 16:
            raise ConfigError("the DAWN key is shorter than 16 bytes", fix="use >= 16 random bytes")
        if not 0 < fraction < MAX_FRACTION:
            raise ConfigError(
                f"DAWN fraction must be in (0, {MAX_FRACTION}), got {fraction}",
                fix="keep the watermarked fraction below 0.5%",
            )
        self.key = key
        self.fraction = fraction
        self.control_fraction = control_fraction

    def apply(self, x: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, Marked]:
        """The answers with marked rows altered (top-1 swapped with a keyed wrong class)."""
        rows = np.ascontiguousarray(x, dtype=np.float32).reshape(len(x), -1)
        n_classes = probs.shape[1]
        victim = probs.argmax(axis=1)
        labels = victim.copy()
        mark = np.zeros(len(rows), bool)
        control = np.zeros(len(rows), bool)
        out = probs.copy()
        for i, row in enumerate(rows):
            u = _u64(self.key, b"dawn-select", row) / 2.0**64
            if u < self.fraction and n_classes > 1:
                offset = 1 + _u64(self.key, b"dawn-label", row) % (n_classes - 1)
                labels[i] = (victim[i] + offset) % n_classes
                mark[i] = True
                a, b = out[i, victim[i]], out[i, labels[i]]
                out[i, victim[i]], out[i, labels[i]] = b, a
            elif u < self.fraction + self.control_fraction:
                control[i] = True
        return out, Marked(mark, control, labels, victim, probs.max(axis=1))


class PairLog:
    """Recorded pairs as JSON lines (one per marked or control query), appended atomically."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def append(self, x: np.ndarray, marked: Marked, model: str) -> int:
        """Record the marked and control rows of one answered batch; returns how many."""
        picked = np.flatnonzero(marked.watermark | marked.control)
        if not len(picked):
            return 0
        lines = "".join(
            json.dumps(
                {
                    "model": model,
                    "kind": "watermark" if marked.watermark[i] else "control",
                    "label": int(marked.labels[i]),
                    "victim": int(marked.victim[i]),
                    "p": round(float(marked.victim_p[i]), 6),
                    "x": np.asarray(x[i], dtype=np.float32).ravel().tolist(),
                },
                separators=(",", ":"),
            )
            + "\n"
            for i in picked
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, lines.encode())  # one write: lines from several processes never interleave
        finally:
            os.close(fd)
        return len(picked)


@dataclass(frozen=True)
class Pairs:
    """Recorded watermark and control queries for one model."""

    x: np.ndarray
    labels: np.ndarray
    victim: np.ndarray
    watermark: np.ndarray  # bool: watermark pair (else control)
    victim_p: np.ndarray  # our model's probability for its own label (NaN: not recorded)


def read_pairs(path: Path, input_shape: tuple[int, ...], model: str | None = None) -> Pairs:
    """Load the recorded pairs (skipping lines for other models); bad lines are an error."""
    if not path.is_file():
        raise InputError(f"no recorded pairs at {path}", fix="point --pairs at the gateway's file")
    xs, labels, victims, kinds, ps = [], [], [], [], []
    size = int(np.prod(input_shape))
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
            if model is not None and rec["model"] != model:
                continue
            row = np.asarray(rec["x"], dtype=np.float32)
            if row.size != size:
                raise ValueError(f"{row.size} values, the model takes {size}")
            xs.append(row.reshape(input_shape))
            labels.append(int(rec["label"]))
            victims.append(int(rec["victim"]))
            kinds.append(rec["kind"] == "watermark")
            ps.append(float(rec.get("p", math.nan)))
        except (ValueError, KeyError, TypeError) as exc:
            raise InputError(
                f"{path}:{n}: not a recorded pair ({exc})", fix="use the gateway's file"
            ) from None
    return Pairs(
        np.asarray(xs, np.float32).reshape(-1, *input_shape),
        np.asarray(labels, int),
        np.asarray(victims, int),
        np.asarray(kinds, bool),
        np.asarray(ps, np.float64),
    )


@dataclass(frozen=True)
class CloneVerdict:
    """The ownership test: how the suspect's disagreements with us fall on watermark pairs."""

    pairs: int  # distinct watermark inputs
    matches: int  # watermark pairs where the suspect gives our altered label
    controls: int  # distinct control inputs
    disagreements: int  # control inputs where the suspect's label differs from our model's
    chance: float  # per-pair match probability under the null, given the disagreements seen
    log2_p_value: float

    @property
    def confidence(self) -> float:
        return 1.0 - 2.0**self.log2_p_value

    def proven(self, log2_alpha: float = -40.0) -> bool:
        return self.log2_p_value <= log2_alpha


def distinct(pairs: Pairs) -> Pairs:
    """The pairs with repeated inputs dropped: one input is one keyed coin, however often asked."""
    flat = np.ascontiguousarray(pairs.x, dtype=np.float32).reshape(len(pairs.x), -1)
    _, first = np.unique(flat.view(np.dtype((np.void, flat.shape[1] * 4))), return_index=True)
    keep = np.sort(first)
    return Pairs(
        pairs.x[keep],
        pairs.labels[keep],
        pairs.victim[keep],
        pairs.watermark[keep],
        pairs.victim_p[keep],
    )


def _stratum_pmf(recorded: int, disagree: int, marked: int, k: int) -> tuple[np.ndarray, float]:
    """Null distribution of the matches in one stratum: J ~ Hypergeom(recorded, disagree,
    marked) disagreements land on watermark pairs, M | J ~ Binomial(J, 1 / (k - 1)). Terms
    below `NEGLIGIBLE` are dropped; their total mass is returned to be added to the p-value."""
    from scipy.stats import binom, hypergeom

    j = np.arange(0, min(disagree, marked) + 1)
    pj = hypergeom.pmf(j, recorded, disagree, marked)
    keep = pj >= NEGLIGIBLE
    dropped = float(pj[~keep].sum())
    j, pj = j[keep], pj[keep]
    if k > 2:
        m = np.arange(0, int(j.max()) + 1)
        pj = (pj[None, :] * binom.pmf(m[:, None], j[None, :], 1.0 / (k - 1))).sum(axis=1)
        j = m
    pmf = np.zeros(int(j.max()) + 1)
    pmf[j] = pj
    small = pmf < NEGLIGIBLE
    return np.where(small, 0.0, pmf), dropped + float(pmf[small].sum())


def _weights(strata: list[tuple[int, int, int, int]], k: int) -> list[int]:
    """Each stratum's integer weight per match: how rare a match is there by chance, in
    quarter bits (coarser when the null law would grow past `SUPPORT_LIMIT` values). The
    weights depend only on counts the test conditions on, so the test stays exact."""
    bits = [
        math.log2(1.0 / min(max(disagree, 1) / recorded / (k - 1), 0.5))
        for recorded, disagree, _, _ in strata
    ]
    support = sum(b * min(d, n) for b, (_, d, n, _) in zip(bits, strata, strict=True))
    scale = min(float(WEIGHT_SCALE), SUPPORT_LIMIT / max(support, 1.0))
    return [max(1, round(scale * b)) for b in bits]


def _log2_weighted_tail(strata: list[tuple[int, int, int, int]], k: int) -> float:
    """log2 P[sum_s w_s M_s >= observed] under the null, exactly: the strata's match counts
    are independent given their counts, so the null law of the sum is their convolution.
    `strata` holds (recorded, disagree, marked, matches) per stratum."""
    strata = [s for s in strata if s[2]]
    law, observed, dropped = np.ones(1), 0, 0.0
    for w, (recorded, disagree, marked, matches) in zip(_weights(strata, k), strata, strict=True):
        pmf, lost = _stratum_pmf(recorded, disagree, marked, k)
        out = np.zeros(len(law) + w * (len(pmf) - 1))
        for m in np.flatnonzero(pmf):  # sparse: only the matches with non-negligible mass
            out[w * m : w * m + len(law)] += pmf[m] * law
        law, observed, dropped = out, observed + w * matches, dropped + lost
    if observed == 0:
        return 0.0
    tail = (float(law[observed:].sum()) if observed < len(law) else 0.0) + dropped
    return min(0.0, math.log2(max(tail, 2.0**-1000)))


def strata_of(pairs: Pairs) -> np.ndarray:
    """Stratum per pair by our model's confidence in its own answer (`CONFIDENCE_EDGES`; pairs
    recorded without it form one more stratum). Inputs where we are unsure are where any other
    model disagrees with us too; kept apart, they do not dilute the confident ones."""
    known = np.isfinite(pairs.victim_p)
    return np.where(
        known,
        np.digitize(np.nan_to_num(pairs.victim_p), CONFIDENCE_EDGES),
        len(CONFIDENCE_EDGES) + 1,
    )


def verify_clone(suspect: Model, pairs: Pairs) -> CloneVerdict:
    """Test `suspect` against the recorded pairs with an exact conditional test.

    Null hypothesis: the suspect was built without our answers, so its label for an input does
    not depend on the key. Among the distinct recorded inputs (watermark or control), which
    ones were watermarked is a keyed coin independent of that label; given the counts, the
    watermark pairs are a uniformly random subset, within each stratum of our own confidence
    too. The suspect's disagreements with our model therefore land on watermark pairs
    hypergeometrically, and each lands on the altered label (uniform over the other C - 1
    classes) with probability 1 / (C - 1). The statistic weighs each stratum's matches by how
    rare a match is there by chance; its exact null law is the convolution of the strata's. A
    clone trained on our answers instead concentrates its disagreements on the watermark pairs,
    on exactly the altered labels. With no control pairs a two-class test has no power.
    """
    if not pairs.watermark.any():
        raise InputError("the recorded pairs hold no watermark pair", fix="record more traffic")
    k = max(2, suspect.n_classes)
    labels = np.concatenate([pairs.labels, pairs.victim])
    wrong = (pairs.labels == pairs.victim)[pairs.watermark]
    if labels.min() < 0 or labels.max() >= k or wrong.any():
        raise InputError(
            f"the recorded labels do not fit a {k}-class model (or a watermark label is ours)",
            fix="test a suspect of the served model's task with the gateway's pairs file",
        )
    pairs = distinct(pairs)
    marked = pairs.watermark
    pred = predict_labels(suspect, pairs.x)
    disagree = pred != pairs.victim
    match = marked & (pred == pairs.labels)
    stratum = strata_of(pairs)
    strata = [
        (int(sel.sum()), int(disagree[sel].sum()), int(marked[sel].sum()), int(match[sel].sum()))
        for sel in (stratum == s for s in np.unique(stratum))
    ]
    n, recorded = int(marked.sum()), len(marked)
    return CloneVerdict(
        n,
        int(match.sum()),
        recorded - n,
        int(disagree[~marked].sum()),
        int(disagree.sum()) / recorded / (k - 1),
        _log2_weighted_tail(strata, k),
    )
