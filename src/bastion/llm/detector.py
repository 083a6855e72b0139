"""The layered prompt detector: normalise, match rules, embed windows, score with the head."""

from __future__ import annotations

from dataclasses import dataclass

from bastion.llm import rules
from bastion.llm.classifier import Featurizer, Head, shipped_head
from bastion.llm.normalize import Normalized, normalize
from bastion.llm.verdict import Reason, Span

# Rule evidence this strong flags on its own (score 1.0), whatever the head says: rules do not
# depend on the sources the head was trained on. Set just above the highest rule score of any
# benign train row (0.75); no benign train or dev row (3105) reaches it.
STRONG_RULES = 0.8

# Evasion signals that are reasons by themselves (hidden text is never an accident).
_SIGNAL_TEXT = {
    "unicode-tags": "text hidden in Unicode tag characters",
    "invisible": "zero-width or other invisible characters",
    "confusables": "look-alike letters from other scripts mixed into words",
}


@dataclass
class Analysis:
    """Everything the detector found in one text, before it is turned into a verdict."""

    norm: Normalized
    hits: list[rules.RuleHit]
    rule_score: float
    model_score: float | None
    windows: int

    @property
    def score(self) -> float:
        """The head's score (rule hits are among its features); 1.0 on strong rule evidence.

        Without a model it is the rules' score alone.
        """
        if self.model_score is None:
            return self.rule_score
        return 1.0 if self.rule_score >= STRONG_RULES else self.model_score


def rule_hits(norm: Normalized) -> dict[str, list[rules.RuleHit]]:
    """Rule hits for the canonical text and every decoded view.

    Text smuggled in Unicode tag characters is a hit by itself: nothing legitimate hides
    readable words there (emoji flags, the one real use, are excluded by the normaliser).
    """
    hits = {view: rules.match(text, view) for view, text in norm.all_texts()}
    for view in norm.views:
        if view.method == "unicode-tags" and sum(ch.isalpha() for ch in view.text) >= 8:
            smuggled = rules.RuleHit(
                "tag-smuggling", "injection", 0.97, view.start, view.end, view.method
            )
            hits[view.method] = [*hits.get(view.method, []), smuggled]
    return hits


class Detector:
    """Scores texts for injection, jailbreak and prompt-leak attempts.

    `use_model=False` gives the rules-only detector (no embedding model needed).
    """

    def __init__(
        self, head: Head | None = None, use_model: bool = True, max_windows: int | None = None
    ) -> None:
        self.use_model = use_model
        self._head = head
        self._featurizer: Featurizer | None = None
        self._max_windows = max_windows

    @property
    def head(self) -> Head:
        """The scoring head (the shipped one unless given), loaded on first use."""
        if self._head is None:
            self._head = shipped_head()
        return self._head

    @property
    def threshold(self) -> float:
        """The operating point (tuned on dev for at most 1% false positives); 0.5 for rules."""
        return self.head.threshold if self.use_model else 0.5

    def featurizer(self) -> Featurizer:
        """The embedding featurizer, built on first use (loading the model takes about a second)."""
        if self._featurizer is None:
            self._featurizer = (
                Featurizer(max_windows=self._max_windows) if self._max_windows else Featurizer()
            )
        return self._featurizer

    def analyse(self, text: str) -> Analysis:
        """Normalise `text`, run the rules and (unless disabled) the learned head."""
        norm = normalize(text)
        by_view = rule_hits(norm)
        hits = [h for view_hits in by_view.values() for h in view_hits]
        score = rules.rule_score(hits)
        if not self.use_model:
            return Analysis(norm, hits, score, None, 0)
        features = self.featurizer().features(norm, by_view)
        if not features.windows:
            return Analysis(norm, hits, score, 0.0, 0)
        model_score = float(self.head.score(features).max())
        return Analysis(norm, hits, score, model_score, features.windows)


def reasons_and_spans(
    analysis: Analysis, source: str, threshold: float
) -> tuple[list[Reason], list[Span]]:
    """Human-readable reasons and the spans behind them."""
    reasons: list[Reason] = []
    spans: list[Span] = []
    seen: set[str] = set()
    for hit in analysis.hits:
        if hit.rule not in seen:
            seen.add(hit.rule)
            where = "" if hit.view == "text" else f" (after decoding {hit.view})"
            reasons.append(
                Reason(f"rule:{hit.rule}", f"{hit.category} pattern in {source}{where}", hit.weight)
            )
        spans.append(Span(hit.start, hit.end, f"{hit.category}:{hit.rule}", source, hit.view))
    if analysis.model_score is not None and analysis.model_score >= threshold:
        reasons.append(
            Reason(
                "model:injection",
                f"classifier flags {source} ({analysis.windows} windows embedded)",
                analysis.model_score,
            )
        )
    for signal, text in _SIGNAL_TEXT.items():
        if signal in analysis.norm.signals:
            reasons.append(Reason(f"evasion:{signal}", f"{text} in {source}", 0.0))
    for view in analysis.norm.views:
        reasons.append(
            Reason(f"decoded:{view.method}", f"{view.method} text decoded in {source}", 0.0)
        )
        spans.append(Span(view.start, view.end, f"encoded:{view.method}", source, "text"))
    return reasons, spans
