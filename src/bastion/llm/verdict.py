"""The result every LLM scan returns: a label, a score, the reasons and where they are."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

LABELS = ("benign", "injection", "leak", "pii")


@dataclass(frozen=True)
class Span:
    """A region of the scanned text that triggered a reason.

    Offsets index the normalised text (`Verdict.normalized`); for plain ASCII input that is
    not truncated it is the input itself. `source` is "input" or "document[i]"; `view` names
    the decoding the region was found through ("text", "base64", "rot13", ...).
    """

    start: int
    end: int
    kind: str
    source: str = "input"
    view: str = "text"


@dataclass(frozen=True)
class Reason:
    """Why the verdict is what it is: a short code, a human detail, and its weight."""

    code: str
    detail: str
    score: float


@dataclass
class Verdict:
    """The outcome of `scan_prompt` or `scan_output`.

    `flagged` is what a caller acts on (block, hold for review); `score` is in [0, 1] and
    `threshold` is the operating point it was compared with.
    """

    label: str
    flagged: bool
    score: float
    threshold: float
    reasons: list[Reason] = field(default_factory=list)
    spans: list[Span] = field(default_factory=list)
    pii: list[dict[str, Any]] = field(default_factory=list)
    truncated: bool = False
    normalized: str | None = None

    def to_dict(self, include_text: bool = False) -> dict[str, Any]:
        """A JSON-ready dict (the normalised text only on request: it can be large or sensitive)."""
        data = asdict(self)
        data["score"] = round(self.score, 4)
        data["threshold"] = round(self.threshold, 4)
        for reason in data["reasons"]:
            reason["score"] = round(reason["score"], 4)
        if not include_text:
            data.pop("normalized")
        return data
