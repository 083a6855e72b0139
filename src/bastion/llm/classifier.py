"""The learned layer: MiniLM window embeddings, hashed word n-grams and rule features, one head.

Each input yields *instances*: one per (view, window). A view is the canonical text or a
decoded view (see `normalize.py`); a window is up to `WINDOW` word pieces. Long texts are cut
into overlapping windows; to keep latency bounded at most `max_windows` are embedded per input
(the first, the last, and those densest in instruction-like word pieces). The dense features
are the mean over instances of [embedding, rule features]; the lexical features are TF-IDF
weighted hashed word uni- and bigrams of all views (hashing: nothing but weights to ship).

The head is a logistic regression stored as safetensors (`data/head.safetensors`): weights,
IDF, bias, and the operating threshold tuned on dev. Retrain with `make retrain-llm-head`.
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
FORMAT = "bastion-llm-head/3"


def hashed_counts(texts: list[str]) -> Any:
    """Hashed counts (scipy CSR): word uni-/bigrams, then character 2-4-grams within words.

    Character n-grams carry the signal in scripts and spellings the word block and the
    English MiniLM model do not know (the data holds machine-translated attacks).
    """
    import scipy.sparse as sp
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
    return sp.hstack([words.transform(texts), chars.transform(texts)]).tocsr()


def _tfidf_block(counts: Any, idf: np.ndarray) -> Any:
    weighted = counts.astype(np.float32).tocsr()
    weighted.data = (1.0 + np.log(weighted.data)) * idf[weighted.indices]
    norms = np.sqrt(np.asarray(weighted.multiply(weighted).sum(axis=1)).ravel())
    scale = 1.0 / np.maximum(norms, 1e-12)
    weighted.data *= np.repeat(scale, np.diff(weighted.indptr))
    return weighted


def tfidf(counts: Any, idf: np.ndarray) -> Any:
    """Per block: sublinear TF times IDF, L2-normalised per row (as TfidfTransformer)."""
    import scipy.sparse as sp

    counts = counts.tocsc()
    blocks = [
        _tfidf_block(counts[:, k : k + HASH_BLOCK], idf[k : k + HASH_BLOCK])
        for k in range(0, HASH_FEATURES, HASH_BLOCK)
    ]
    return sp.hstack(blocks).tocsr()


@dataclass(frozen=True)
class Head:
    """Logistic regression over [lexical TF-IDF, dense features], IDF and the tuned threshold."""

    lexical: np.ndarray
    idf: np.ndarray
    dense: np.ndarray
    bias: float
    threshold: float
    meta: dict[str, Any]

    def score(self, lexical_rows: Any, dense_rows: np.ndarray) -> np.ndarray:
        """Attack probability per row: `lexical_rows` are hashed counts, `dense_rows` dense."""
        z = tfidf(lexical_rows, self.idf) @ self.lexical + dense_rows @ self.dense + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(np.asarray(z, dtype=np.float64), -30.0, 30.0)))

    def to_bytes(self) -> bytes:
        """The head as safetensors (tensors plus string metadata: nothing executable)."""
        from safetensors.numpy import save

        tensors: dict[str, np.ndarray] = {
            "lexical": self.lexical.astype(np.float32),
            "idf": self.idf.astype(np.float32),
            "dense": self.dense.astype(np.float32),
            "bias_threshold": np.array([self.bias, self.threshold], dtype=np.float64),
        }
        # one metadata key, sorted: the same head gives the same bytes
        body = {"format": FORMAT, "dense_features": list(DENSE_FEATURES), "meta": self.meta}
        return bytes(save(tensors, metadata={"bastion": json.dumps(body, sort_keys=True)}))


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
        head = Head(
            lexical=tensors["lexical"],
            idf=tensors["idf"],
            dense=tensors["dense"],
            bias=float(tensors["bias_threshold"][0]),
            threshold=float(tensors["bias_threshold"][1]),
            meta=dict(meta.get("meta", {})),
        )
        if head.lexical.shape != (HASH_FEATURES,) or head.idf.shape != (HASH_FEATURES,):
            raise ValueError(f"expected {HASH_FEATURES} lexical weights")
        if head.dense.shape != (len(DENSE_FEATURES),):
            raise ValueError(f"expected {len(DENSE_FEATURES)} dense weights")
    except (OSError, ValueError, KeyError, TypeError, SafetensorError) as exc:
        raise InputError(
            f"cannot load the LLM head: {exc}", fix="run `make retrain-llm-head`"
        ) from exc
    if not (0.0 < head.threshold < 1.0 and math.isfinite(head.bias)):
        raise InputError(
            "the LLM head has an invalid threshold or bias", fix="run `make retrain-llm-head`"
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
    """Start offsets of overlapping windows covering `n_tokens` word pieces."""
    if n_tokens <= WINDOW:
        return [0]
    starts = list(range(0, n_tokens - WINDOW, STRIDE))
    starts.append(n_tokens - WINDOW)
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
        self, norm: Normalized, hits_by_view: dict[str, list[rules.RuleHit]]
    ) -> tuple[np.ndarray, list[Instance]]:
        """Feature rows for the canonical text and its views, within the window budget."""
        texts = model_texts(norm)
        budget = max(self.max_windows, len(texts))
        windows: list[list[int]] = []
        where: list[Instance] = []
        extras: list[np.ndarray] = []
        for index, (view, text) in enumerate(texts):
            ids = self.embedder.token_ids(text) if text.strip() else []
            if not ids:
                continue
            # the canonical text gets what the views leave; each view gets at least one window
            share = budget - (len(texts) - 1) if index == 0 else 1
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
        embedded = self.embedder.embed_ids(windows)
        return np.hstack([embedded, np.vstack(extras)]).astype(np.float32), where

    def features(
        self, norm: Normalized, hits_by_view: dict[str, list[rules.RuleHit]]
    ) -> tuple[Any, np.ndarray, int]:
        """Hashed counts and mean dense rows for each reading, and the windows embedded.

        Row 0 reads everything (the text and its decoded views); row 1, when there are
        views, reads the decoded views alone, so an encoding's gibberish cannot dilute
        what it hid. The input's score is the higher of the two.
        """
        rows, where = self.instances(norm, hits_by_view)
        texts = model_texts(norm)
        readings = [(texts, np.ones(len(where), dtype=bool))]
        decoded = np.array([w.view != "text" for w in where], dtype=bool)
        if len(texts) > 1 and decoded.any():
            readings.append((texts[1:], decoded))
        lexical = hashed_counts(["\n".join(text for _, text in chosen) for chosen, _ in readings])
        dense = np.zeros((len(readings), len(DENSE_FEATURES)), dtype=np.float32)
        for i, (_, mask) in enumerate(readings):
            if mask.any():
                dense[i] = rows[mask].mean(axis=0)
        return lexical, dense, len(where)
