"""`scan_prompt` and `scan_output`: the library entry points of the LLM guard."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Sequence

from bastion.core.errors import InputError
from bastion.llm import pii
from bastion.llm.canary import Canary, find_canary
from bastion.llm.detector import Detector, reasons_and_spans
from bastion.llm.normalize import MAX_SCAN_CHARS, bound
from bastion.llm.verdict import Reason, Span, Verdict

MAX_DOCUMENTS = 64
MAX_PII_LISTED = 1_000  # findings listed per source; the rest are counted in a reason
_SHINGLE = 8

_default: Detector | None = None
_default_lock = threading.Lock()


def default_detector() -> Detector:
    """The process-wide detector with the shipped head (built on first use)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Detector()
        return _default


def as_text(value: object, what: str = "prompt") -> str:
    """A str from str or bytes; malformed UTF-8 and other types are input errors."""
    if isinstance(value, str):
        # lone surrogates (from JSON escapes) cannot be encoded; make them visible instead
        return value.encode("utf-8", "replace").decode("utf-8") if _has_surrogates(value) else value
    if isinstance(value, bytes | bytearray):
        try:
            return bytes(value).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InputError(
                f"the {what} is not valid UTF-8 (byte {exc.start}: {exc.reason})",
                fix="send text encoded as UTF-8",
            ) from exc
    raise InputError(f"the {what} must be text, not {type(value).__name__}", fix="pass a str")


def _has_surrogates(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _binary_share(text: str) -> float:
    sample = text[:4096]
    if not sample:
        return 0.0
    controls = sum(1 for ch in sample if (ord(ch) < 32 and ch not in "\n\r\t") or ch == "\ufffd")
    return controls / len(sample)


def _input_reasons(text: str, source: str, partial: bool = False) -> list[Reason]:
    """Empty, over-long or binary input. `partial`: an over-long text is still checked in part."""
    reasons = []
    if not text.strip():
        reasons.append(Reason("input:empty", f"{source} is empty", 0.0))
    if len(text) > MAX_SCAN_CHARS:
        if partial:
            (_, head), (tail, _) = pii.scanned_parts(len(text))
            what = (
                f"only characters 0-{head} and {tail}-{len(text)} were checked for leaks,"
                " secrets and PII"
            )
        else:
            what = "it was not scanned"
        reasons.append(
            Reason(
                "input:unscannable",
                f"{source} has {len(text)} characters, over the {MAX_SCAN_CHARS} scanned:"
                f" {what}; hold it for review",
                1.0,
            )
        )
    if _binary_share(text) > 0.1:
        reasons.append(Reason("input:binary", f"{source} looks like binary data, not text", 0.0))
    return reasons


def _pii_entries(
    found: list[pii.PiiMatch], source: str, reasons: list[Reason]
) -> list[dict[str, object]]:
    """The first `MAX_PII_LISTED` findings as verdict entries; a reason counts the rest."""
    if len(found) > MAX_PII_LISTED:
        reasons.append(
            Reason(
                "pii:unlisted",
                f"{len(found) - MAX_PII_LISTED} more PII or secret findings in {source}"
                f" (after offset {found[MAX_PII_LISTED - 1].end}) are not listed",
                0.0,
            )
        )
    return [{**m.to_dict(), "source": source} for m in found[:MAX_PII_LISTED]]


def scan_prompt(
    text: str | bytes,
    documents: Sequence[str | bytes] | None = None,
    *,
    detector: Detector | None = None,
    flag_pii: bool = False,
    include_text: bool = False,
) -> Verdict:
    """Score a prompt and the documents it carries for injection, jailbreak and prompt leaks.

    Each document (a retrieved page, an e-mail, a tool result) is scanned on its own, so an
    instruction hidden in one of them is not diluted by the rest. PII and secrets are listed
    in `Verdict.pii`; they flag the verdict only with `flag_pii=True`. A text longer than
    `MAX_SCAN_CHARS` is not scanned: the verdict is flagged with the label "unscannable".
    PII, secrets and the rules search the whole of each text; the classifier reads a bounded
    excerpt of a long one (its head, tail and the most instruction-like chunks between them).
    """
    det = detector or default_detector()
    prompt = as_text(text)
    docs = [as_text(d, f"document {i}") for i, d in enumerate(documents or [])]
    sources = [("input", prompt)] + [
        (f"document[{i}]", d) for i, d in enumerate(docs[:MAX_DOCUMENTS])
    ]
    reasons: list[Reason] = []
    spans: list[Span] = []
    found_pii: list[dict[str, object]] = []
    score = 0.0
    truncated = len(docs) > MAX_DOCUMENTS
    if truncated:
        reasons.append(
            Reason(
                "input:truncated",
                f"only the first {MAX_DOCUMENTS} of {len(docs)} documents scanned",
                0.0,
            )
        )
    normalized = None
    unscannable = False
    for source, body in sources:
        reasons.extend(_input_reasons(body, source))
        if len(body) > MAX_SCAN_CHARS:
            unscannable = truncated = True  # too long to scan whole: never passed as benign
            continue
        if not body.strip():
            continue
        analysis = det.analyse(body)
        truncated = truncated or analysis.norm.truncated
        more_reasons, more_spans = reasons_and_spans(analysis, source, det.threshold)
        reasons.extend(more_reasons)
        spans.extend(more_spans)
        score = max(score, analysis.score)
        found_pii.extend(_pii_entries(pii.find(body), source, reasons))
        if source == "input":
            normalized = analysis.norm.text
    injection = score >= det.threshold
    flagged = injection or unscannable or (flag_pii and bool(found_pii))
    label = "injection" if injection else ("pii" if found_pii else "benign")
    if unscannable and not injection:
        label, score = "unscannable", 1.0
    return Verdict(
        label=label,
        flagged=flagged,
        score=score,
        threshold=det.threshold,
        reasons=reasons,
        spans=spans,
        pii=found_pii,
        truncated=truncated,
        normalized=normalized if include_text else None,
    )


def _shingles(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i : i + _SHINGLE]) for i in range(max(0, len(words) - _SHINGLE + 1))}


def system_prompt_overlap(output: str, system_prompt: str) -> float:
    """Share of the system prompt's 8-word shingles that appear in the output."""
    theirs = _shingles(system_prompt)
    if not theirs:
        words = re.findall(r"\w+", system_prompt.lower())
        return (
            1.0
            if words and " ".join(words) in " ".join(re.findall(r"\w+", output.lower()))
            else 0.0
        )
    return len(theirs & _shingles(output)) / len(theirs)


def scan_output(
    text: str | bytes,
    *,
    canaries: Iterable[Canary | str] = (),
    system_prompt: str | None = None,
    flag_pii: bool = False,
    check_injection: bool = False,
    detector: Detector | None = None,
) -> Verdict:
    """Check a model's output for leaks: canary markers, system-prompt text, secrets, PII.

    With `check_injection=True` the output is also scored as a prompt (useful when one
    model's output becomes another's input).
    """
    output = as_text(text, "output")
    bounded, truncated = bound(output, MAX_SCAN_CHARS)
    reasons = _input_reasons(output, "output", partial=True)
    spans: list[Span] = []
    score = 0.0
    label = "benign"
    for item in canaries:
        marker = item.marker if isinstance(item, Canary) else str(item)
        how = find_canary(bounded, marker)
        if how is not None:
            reasons.append(Reason("leak:canary", f"canary marker in the output ({how})", 1.0))
            score, label = 1.0, "leak"
    if system_prompt:
        overlap = system_prompt_overlap(bounded, system_prompt)
        if overlap >= 0.2:
            reasons.append(
                Reason(
                    "leak:system-prompt", f"{overlap:.0%} of the system prompt repeated", overlap
                )
            )
            score, label = max(score, min(1.0, 0.5 + overlap)), "leak"
    found = pii.find(output)  # offsets into `output`, searched whole up to MAX_SCAN_CHARS
    secrets = [m for m in found if m.secret]
    for kind in sorted({m.kind for m in secrets}):
        count = sum(1 for m in secrets if m.kind == kind)
        detail = f"{kind} in the output" + (f" ({count} found)" if count > 1 else "")
        reasons.append(Reason("leak:secret", detail, 0.95))
    for m in secrets[:MAX_PII_LISTED]:
        spans.append(Span(m.start, m.end, f"secret:{m.kind}", "output"))
    listed = _pii_entries(found, "output", reasons)
    if secrets:
        score, label = max(score, 0.95), "leak"
    personal = [m for m in found if not m.secret]
    if personal and label == "benign":
        label = "pii"
    threshold = 0.5
    if check_injection:
        det = detector or default_detector()
        analysis = det.analyse(bounded)
        more_reasons, more_spans = reasons_and_spans(analysis, "output", det.threshold)
        reasons.extend(more_reasons)
        spans.extend(more_spans)
        if analysis.score >= det.threshold and label in ("benign", "pii"):
            label = "injection"
            score = max(score, 0.5 + 0.5 * analysis.score)
    if len(output) > MAX_SCAN_CHARS and label in ("benign", "pii"):
        label, score = "unscannable", 1.0  # too long to check whole: never passed as clean
    flagged = label in ("leak", "injection", "unscannable") or (flag_pii and bool(personal))
    if flagged and label == "pii":
        score = max(score, 0.5)
    return Verdict(
        label=label,
        flagged=flagged,
        score=score,
        threshold=threshold,
        reasons=reasons,
        spans=spans,
        pii=listed,
        truncated=truncated,
    )
