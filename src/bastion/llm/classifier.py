"""The learned layer: MiniLM window embeddings, hashed n-grams and rule features, two models.

Each input yields *instances*: one per (view, window). A view is the canonical text or a
decoded view (see `normalize.py`); a window is up to `WINDOW` word pieces. Long texts are cut
into overlapping windows (the last one runs to the end and is embedded at its own length);
to keep latency bounded at most `max_windows` are embedded per input (the first, the last,
and those densest in instruction-like word pieces). The dense features are the
length-weighted mean over instances of [max-pooled embedding, rule features]. The lexical
features are TF-IDF weighted hashed word 1-2-grams and character 2-4-grams (hashing: nothing
but weights to ship), counted per sentence-like segment; a reading's counts are the sum of
its segments'.

The head (`Head`) holds a document model (lexical + dense, the whole reading) and a segment
model (lexical, each segment alone, the highest wins), stored as safetensors
(`data/head.safetensors`) with the operating threshold tuned on dev. Retrain with
`make retrain-llm-head` (see `train.py`).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.llm import rules
from bastion.llm.embed import DIM, Embedder, get_embedder
from bastion.llm.normalize import MAX_CHARS, Normalized, bound

WINDOW = 62  # word pieces per window (64 with [CLS] and [SEP])
STRIDE = 48  # 14 word pieces of overlap between neighbouring windows
MAX_WINDOWS = 4

RULE_FEATURES = (
    "rules.injection",
    "rules.jailbreak",
    "rules.leak",
    "rules.score",
    "signal.hidden",
    "signal.invisible",
    "signal.confusables",
    "view.decoded",
)

DENSE_FEATURES = tuple(f"embedding.{i}" for i in range(DIM)) + RULE_FEATURES

_CUES = (
    "ignore disregard forget previous prior above instructions instruction prompt system "
    "pretend act role character rules password secret reveal repeat override instead new "
    "respond reply answer say print output you your must now jailbreak mode unfiltered"
)


_CUE_WORDS = re.compile(r"\b(?:" + "|".join(_CUES.split()) + r")\b", re.IGNORECASE)
_EXCERPT_CHUNK = 2_000  # characters per candidate chunk of a long text's middle
_EXCERPT_MARGIN = 200  # context kept on each side of a chosen chunk


def excerpt(text: str, limit: int = MAX_CHARS) -> str:
    """A long text's head, its tail, and the chunks between them densest in cue words.

    The classifier reads at most about `limit` characters; choosing the middle by cue density
    means an instruction buried in the middle of a long prompt is still embedded.
    """
    if len(text) <= limit:
        return text
    edge = limit // 8
    counts: dict[int, int] = {}
    for m in _CUE_WORDS.finditer(text, edge, len(text) - edge):
        chunk = (m.start() - edge) // _EXCERPT_CHUNK
        counts[chunk] = counts.get(chunk, 0) + 1
    room = (limit - 2 * edge) // (_EXCERPT_CHUNK + 2 * _EXCERPT_MARGIN)
    chosen = sorted(sorted(counts, key=lambda c: (-counts[c], c))[:room])
    starts = [edge + c * _EXCERPT_CHUNK for c in chosen]
    middle = [
        text[max(edge, s - _EXCERPT_MARGIN) : s + _EXCERPT_CHUNK + _EXCERPT_MARGIN] for s in starts
    ]
    return "\n".join([text[:edge], *middle, text[-edge:]])


def model_texts(norm: Normalized) -> list[tuple[str, str]]:
    """(view, text) the model reads: the canonical text's excerpt and each view's head and tail."""
    return [("text", excerpt(norm.text)), *((v.method, bound(v.text)[0]) for v in norm.views)]


@dataclass(frozen=True)
class Instance:
    """Where an instance comes from: the view and the window's word-piece range."""

    view: str
    first_token: int
    last_token: int


HASH_BLOCK = 2**17  # columns per hashed block: word 1-2-grams, then character 2-4-grams
HASH_FEATURES = 2 * HASH_BLOCK
FORMAT = "bastion-llm-head/4"
MIX = 0.5  # weight of the segment model's logit in the combined score

# Sentence-like segments: split at sentence ends and line breaks, short pieces merged.
_SEGMENT_SPLIT = re.compile(r"(?<=[.!?;:\u3002\uff01\uff1f])\s+|\n+|(?<=[\u3002\uff01\uff1f])")
_SEGMENT_MIN = 40  # characters: shorter pieces join the next one


def segments(text: str) -> list[str]:
    """Sentence-like pieces of `text` of at least `_SEGMENT_MIN` characters (the last may be less).

    An instruction slipped into a long e-mail or web page is one sentence among many: scored
    alone, it is not diluted by the document around it.
    """
    out: list[str] = []
    buf = ""
    for piece in _SEGMENT_SPLIT.split(text):
        piece = piece.strip() if piece else ""
        if not piece:
            continue
        buf = f"{buf} {piece}" if buf else piece
        if len(buf) >= _SEGMENT_MIN:
            out.append(buf)
            buf = ""
    if buf:
        if out:
            out[-1] = f"{out[-1]} {buf}"
        else:
            out.append(buf)
    return out


@lru_cache(maxsize=1)
def _vectorizers() -> tuple[Any, Any]:
    from sklearn.feature_extraction.text import HashingVectorizer

    words = HashingVectorizer(
        n_features=HASH_BLOCK, ngram_range=(1, 2), alternate_sign=False, norm=None
    )
    chars = HashingVectorizer(
        n_features=HASH_BLOCK,
        ngram_range=(2, 4),
        analyzer="char_wb",
        alternate_sign=False,
        norm=None,
    )
    return words, chars


def hashed_counts(texts: list[str]) -> Any:
    """Hashed counts (scipy CSR): word uni-/bigrams, then character 2-4-grams within words.

    Character n-grams carry the signal in scripts and spellings the word block and the
    English MiniLM model do not know (the data holds machine-translated attacks).
    """
    import scipy.sparse as sp

    words, chars = _vectorizers()
    return sp.hstack([words.transform(texts), chars.transform(texts)], format="csr")


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Per block: sublinear TF times IDF, L2-normalised per row (as TfidfTransformer).

    Works on the CSR arrays directly: no per-block slicing or format conversion.
    """
    import scipy.sparse as sp

    counts = counts.tocsr()
    n = counts.shape[0]
    indices = counts.indices
    data = (1.0 + np.log(counts.data.astype(np.float32))) * idf[indices]
    row = np.repeat(np.arange(n), np.diff(counts.indptr))
    key = 2 * row + (indices >= HASH_BLOCK)
    norms = np.sqrt(np.bincount(key, weights=data * data, minlength=2 * n))
    data = (data / np.maximum(norms, 1e-12)[key]).astype(np.float32)
    return sp.csr_matrix((data, indices, counts.indptr), shape=counts.shape)


@dataclass(frozen=True)
class Features:
    """What the head reads for one input.

    Readings: row 0 reads everything (the text and its decoded views); row 1, when there
    are views, reads the decoded views alone, so an encoding's gibberish cannot dilute what
    it hid. `counts` and `dense` have one row per reading; `segment_counts` one row per
    segment, and `segment_text[j]` is the index (0 = the text, 1.. = views) of the text
    segment j comes from. `windows` is how many windows were embedded.
    """

    counts: Any
    dense: np.ndarray
    segment_counts: Any
    segment_text: np.ndarray
    windows: int


@dataclass(frozen=True)
class Head:
    """Two logistic regressions and their mix, IDF, and the tuned threshold.

    The document model reads each reading whole: TF-IDF hashed n-grams plus the dense
    features (standardisation folded into the weights). The segment model reads each
    segment alone; a reading's segment score is its highest (for a reading of one segment,
    the document score stands in: a short prompt is judged as a whole). The combined logit
    is `(1 - mix) * document + mix * segment`.
    """

    lexical: np.ndarray
    idf: np.ndarray
    dense: np.ndarray
    bias: float
    segment_lexical: np.ndarray
    segment_idf: np.ndarray
    segment_bias: float
    mix: float
    threshold: float
    meta: dict[str, Any]

    def logits(self, features: Features) -> np.ndarray:
        """The combined logit per reading (row 0 all texts, row 1 the decoded views)."""
        doc = (
            tfidf(features.counts, self.idf) @ self.lexical
            + features.dense @ self.dense
            + self.bias
        )
        seg = tfidf(features.segment_counts, self.segment_idf) @ self.segment_lexical
        seg = np.asarray(seg, dtype=np.float64) + self.segment_bias
        doc = np.asarray(doc, dtype=np.float64)
        best = doc.copy()  # one segment is the whole text: the document model reads it
        for reading in range(len(doc)):
            mine = seg[features.segment_text >= reading]
            if mine.size >= 2:
                best[reading] = float(mine.max())
        return (1.0 - self.mix) * doc + self.mix * best

    def score(self, features: Features) -> np.ndarray:
        """Attack probability per reading."""
        z = np.clip(self.logits(features), -30.0, 30.0)
        return 1.0 / (1.0 + np.exp(-z))

    def to_bytes(self) -> bytes:
        """The head as safetensors (tensors plus string metadata: nothing executable).

        The hashed weights and IDF are stored as float16 (half the size; scores move by
        well under 1e-3).
        """
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {
            "lexical": self.lexical.astype(np.float16),
            "idf": self.idf.astype(np.float16),
            "segment_lexical": self.segment_lexical.astype(np.float16),
            "segment_idf": self.segment_idf.astype(np.float16),
            "dense": self.dense.astype(np.float32),
            "scalars": np.array(
                [self.bias, self.segment_bias, self.mix, self.threshold], dtype=np.float64
            ),
        }
        # one metadata key, sorted: the same head gives the same bytes
        body = {"format": FORMAT, "dense_features": list(DENSE_FEATURES), "meta": self.meta}
        return bytes(save(tensors, metadata={"bastion": json.dumps(body, sort_keys=True)}))

    def rounded(self) -> Head:
        """This head as it reads back from its file (float16 hashed weights)."""
        return Head(
            self.lexical.astype(np.float16).astype(np.float32),
            self.idf.astype(np.float16).astype(np.float32),
            self.dense,
            self.bias,
            self.segment_lexical.astype(np.float16).astype(np.float32),
            self.segment_idf.astype(np.float16).astype(np.float32),
            self.segment_bias,
            self.mix,
            self.threshold,
            self.meta,
        )


def load_head(path: str | Path | None = None) -> Head:
    """The shipped head, or one from `path`; malformed files get a clear error."""
    from safetensors import SafetensorError
    from safetensors.numpy import load

    try:
        if path is None:
            raw = resources.files("bastion.llm").joinpath("data/head.safetensors").read_bytes()
        else:
            raw = Path(path).read_bytes()
        tensors = load(raw)
        meta = json.loads(_metadata(raw).get("bastion", "{}"))
        if meta.get("format") != FORMAT:
            raise ValueError(f"expected format {FORMAT}")
        bias, segment_bias, mix, threshold = (float(v) for v in tensors["scalars"])
        head = Head(
            lexical=tensors["lexical"].astype(np.float32),
            idf=tensors["idf"].astype(np.float32),
            dense=tensors["dense"].astype(np.float32),
            bias=bias,
            segment_lexical=tensors["segment_lexical"].astype(np.float32),
            segment_idf=tensors["segment_idf"].astype(np.float32),
            segment_bias=segment_bias,
            mix=mix,
            threshold=threshold,
            meta=dict(meta.get("meta", {})),
        )
        for name in ("lexical", "idf", "segment_lexical", "segment_idf"):
            if getattr(head, name).shape != (HASH_FEATURES,):
                raise ValueError(f"expected {HASH_FEATURES} values in {name}")
        if head.dense.shape != (len(DENSE_FEATURES),):
            raise ValueError(f"expected {len(DENSE_FEATURES)} dense weights")
        finite = all(
            np.isfinite(a).all()
            for a in (head.lexical, head.idf, head.segment_lexical, head.segment_idf, head.dense)
        )
        if not finite:
            raise ValueError("non-finite weights")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise InputError(
            f"cannot load the LLM head: {exc}", fix="run `make retrain-llm-head`"
        ) from exc
    scalars_ok = all(math.isfinite(v) for v in (head.bias, head.segment_bias, head.mix))
    if not (0.0 < head.threshold < 1.0 and 0.0 <= head.mix <= 1.0 and scalars_ok):
        raise InputError(
            "the LLM head has an invalid threshold, mix or bias",
            fix="run `make retrain-llm-head`",
        )
    return head


def _metadata(raw: bytes) -> dict[str, str]:
    """The string metadata of a safetensors blob (its JSON header's __metadata__)."""
    size = int.from_bytes(raw[:8], "little")
    if size > len(raw) - 8 or size > 10_000_000:
        raise ValueError("truncated safetensors header")
    header = json.loads(raw[8 : 8 + size])
    return dict(header.get("__metadata__", {}))


@lru_cache(maxsize=1)
def shipped_head() -> Head:
    """The head that ships in the package (cached)."""
    return load_head()


def window_starts(n_tokens: int) -> list[int]:
    """Start offsets of overlapping windows covering `n_tokens` word pieces.

    Windows start every `STRIDE` pieces; the last one runs to the end and may be short (it is
    embedded at its own length, not padded: no work is spent on padding).
    """
    starts = [0]
    while starts[-1] + WINDOW < n_tokens:
        starts.append(starts[-1] + STRIDE)
    return starts


def select_windows(ids: list[int], cue_ids: frozenset[int], max_windows: int) -> list[int]:
    """The window starts to embed: all if few, else first, last and the most cue-dense."""
    starts = window_starts(len(ids))
    if len(starts) <= max_windows:
        return starts
    inner = starts[1:-1]
    density = [sum(1 for t in ids[s : s + WINDOW] if t in cue_ids) for s in inner]
    ranked = [s for _, s in sorted(zip(density, inner, strict=True), key=lambda p: (-p[0], p[1]))]
    return sorted([starts[0], starts[-1], *ranked[: max(0, max_windows - 2)]])


def rule_features(hits: list[rules.RuleHit], norm: Normalized, view: str) -> np.ndarray:
    """The handful of rule and evasion features appended to each embedding."""
    counts = rules.category_counts(hits)
    return np.array(
        [
            math.log1p(counts["injection"]),
            math.log1p(counts["jailbreak"]),
            math.log1p(counts["leak"]),
            rules.rule_score(hits),
            1.0 if "unicode-tags" in norm.signals else 0.0,
            1.0 if "invisible" in norm.signals else 0.0,
            1.0 if "confusables" in norm.signals else 0.0,
            0.0 if view == "text" else 1.0,
        ],
        dtype=np.float32,
    )


class Featurizer:
    """Turns a normalised input into instance feature rows (embedding + rule features)."""

    def __init__(self, embedder: Embedder | None = None, max_windows: int = MAX_WINDOWS) -> None:
        self.embedder = embedder or get_embedder()
        self.max_windows = max_windows
        self.cue_ids = frozenset(
            i for word in _CUES.split() for i in self.embedder.token_ids(word) if i > 1000
        )

    def instances(
        self,
        norm: Normalized,
        hits_by_view: dict[str, list[rules.RuleHit]],
        texts: list[tuple[str, str]] | None = None,
    ) -> tuple[np.ndarray, list[Instance]]:
        """Feature rows for the canonical text and its views, within the window budget.

        `texts` are `model_texts(norm)` when the caller has them already.
        """
        texts = model_texts(norm) if texts is None else texts
        budget = max(self.max_windows, len(texts))
        main = _main_text(norm)
        windows: list[list[int]] = []
        where: list[Instance] = []
        extras: list[np.ndarray] = []
        for index, (view, text) in enumerate(texts):
            ids = self.embedder.token_ids(text) if text.strip() else []
            if not ids:
                continue
            # the main text gets what the others leave; every other text gets one window
            share = budget - (len(texts) - 1) if index == main else 1
            share = max(1, min(share, budget - len(windows)))
            feats = rule_features(hits_by_view.get(view, []), norm, view)
            for start in select_windows(ids, self.cue_ids, share):
                windows.append(ids[start : start + WINDOW])
                where.append(Instance(view, start, min(len(ids), start + WINDOW)))
                extras.append(feats)
            if len(windows) >= budget:
                break
        if not windows:
            return np.zeros((0, DIM + len(RULE_FEATURES)), dtype=np.float32), []
        embedded = self.embedder.embed_ids(windows, pooling="max")
        return np.hstack([embedded, np.vstack(extras)]).astype(np.float32), where

    def features(self, norm: Normalized, hits_by_view: dict[str, list[rules.RuleHit]]) -> Features:
        """Hashed counts, dense rows and segments for each reading (see `Features`)."""
        texts = model_texts(norm)
        rows, where = self.instances(norm, hits_by_view, texts)
        pieces: list[str] = []
        owner: list[int] = []
        for index, (_, text) in enumerate(texts):
            found = segments(text)
            pieces.extend(found)
            owner.extend([index] * len(found))
        segment_text = np.array(owner, dtype=np.int64)
        segment_counts = hashed_counts(pieces) if pieces else _empty_counts(0)
        decoded = np.array([w.view != "text" for w in where], dtype=bool)
        masks = [np.ones(len(where), dtype=bool)]
        if len(texts) > 1 and (segment_text > 0).any():
            masks.append(decoded)
        # a window counts by its length: a short last window is not worth a full one
        length = np.array([w.last_token - w.first_token for w in where], dtype=np.float32)
        dense = np.zeros((len(masks), len(DENSE_FEATURES)), dtype=np.float32)
        for i, mask in enumerate(masks):
            if mask.any():
                dense[i] = length[mask] @ rows[mask] / length[mask].sum()
        counts = _reading_sums(segment_counts, segment_text, len(masks))
        return Features(counts, dense, segment_counts, segment_text, len(where))


def _main_text(norm: Normalized) -> int:
    """Index in `model_texts` of the text that gets most windows.

    The canonical text, unless a view decodes the whole of it (ROT13, URL encoding, text in
    tag characters...): then the canonical text is the wrapping and the view is the content.
    """
    for index, view in enumerate(norm.views, start=1):
        if view.start == 0 and view.end >= len(norm.text) and view.text.strip():
            return index
    return 0


def _empty_counts(rows: int) -> Any:
    import scipy.sparse as sp

    return sp.csr_matrix((rows, HASH_FEATURES), dtype=np.float64)


def _reading_sums(segment_counts: Any, segment_text: np.ndarray, readings: int) -> Any:
    """A reading's counts are the sum of its segments' (reading r reads texts r, r+1, ...)."""
    import scipy.sparse as sp

    if not len(segment_text):
        return _empty_counts(readings)
    pick = np.vstack([segment_text >= r for r in range(readings)]).astype(np.float64)
    return (sp.csr_matrix(pick) @ segment_counts).tocsr()
