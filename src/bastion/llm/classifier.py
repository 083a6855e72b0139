"""The learned layer: MiniLM embeddings of token windows plus rule features, scored by a small head.

Each input yields *instances*: one per (view, window). A view is the canonical text or a
decoded view (see `normalize.py`); a window is up to `WINDOW` word pieces. Long texts are cut
into overlapping windows; to keep latency bounded at most `max_windows` are embedded per input
(the first, the last, and those densest in instruction-like word pieces). The input's score
is the highest instance score, so an injection hidden in one window of a long document counts.

The head is a logistic regression stored as JSON (`data/head.json`): weights, bias, feature
names and the operating threshold tuned on dev. Retrain with `make retrain-llm-head`.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import InputError
from bastion.llm import rules
from bastion.llm.embed import DIM, Embedder, get_embedder
from bastion.llm.normalize import Normalized

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

_CUES = (
    "ignore disregard forget previous prior above instructions instruction prompt system "
    "pretend act role character rules password secret reveal repeat override instead new "
    "respond reply answer say print output you your must now jailbreak mode unfiltered"
)


@dataclass(frozen=True)
class Instance:
    """Where an instance comes from: the view and the window's word-piece range."""

    view: str
    first_token: int
    last_token: int


@dataclass(frozen=True)
class Head:
    """Logistic-regression weights over [embedding, rule features], and the tuned threshold."""

    weights: np.ndarray
    bias: float
    threshold: float
    meta: dict[str, Any]

    def score(self, features: np.ndarray) -> np.ndarray:
        """Probability of an attack for each row of `features`."""
        z = features @ self.weights + self.bias
        return 1.0 / (1.0 + np.exp(-np.clip(z, -30.0, 30.0)))

    def to_json(self) -> str:
        """The head as JSON (a safe format: numbers and strings only)."""
        body = {
            "format": "bastion-llm-head/1",
            "features": [f"embedding.{i}" for i in range(DIM)] + list(RULE_FEATURES),
            "weights": [round(float(w), 7) for w in self.weights],
            "bias": float(self.bias),
            "threshold": float(self.threshold),
            "meta": self.meta,
        }
        return json.dumps(body, indent=1)


def load_head(path: str | Path | None = None) -> Head:
    """The shipped head, or one from `path`; malformed files get a clear error."""
    try:
        if path is None:
            raw = resources.files("bastion.llm").joinpath("data/head.json").read_text("utf-8")
        else:
            raw = Path(path).read_text("utf-8")
        body = json.loads(raw)
        weights = np.asarray(body["weights"], dtype=np.float32)
        expected = DIM + len(RULE_FEATURES)
        if body.get("format") != "bastion-llm-head/1" or weights.shape != (expected,):
            raise ValueError(f"expected format bastion-llm-head/1 with {expected} weights")
        head = Head(
            weights, float(body["bias"]), float(body["threshold"]), dict(body.get("meta", {}))
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise InputError(
            f"cannot load the LLM head: {exc}", fix="run `make retrain-llm-head`"
        ) from exc
    if not (0.0 < head.threshold < 1.0 and math.isfinite(head.bias)):
        raise InputError(
            "the LLM head has an invalid threshold or bias", fix="run `make retrain-llm-head`"
        )
    return head


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
        texts = norm.all_texts()
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
