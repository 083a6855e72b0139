"""PII and secrets in prompts and outputs, with checksums where they exist, and redaction.

Found: e-mail addresses, phone numbers, payment cards (Luhn), IBANs (ISO 7064 mod 97),
US SSNs (format rules), UK National Insurance numbers (format rules), Spanish DNI/NIE
(check letter), Dutch BSN (11-test, only next to a BSN keyword), API keys and tokens by
known prefixes, private-key blocks, and high-entropy values assigned to secret-sounding names.

`redact(text)` replaces each finding with a placeholder such as `[EMAIL_1]` and returns the
mapping, so the caller can put the values back (`restore`) after the model has answered.

The whole text is searched, up to `MAX_SCAN_CHARS` (2 million characters: about a second in
the worst case, every pattern linear in the text); of a longer text only the first
`MAX_SCAN_CHARS - TAIL_CHARS` and the last `TAIL_CHARS` characters are searched (see
`scanned_parts`), and offsets always refer to the original text.
"""

from __future__ import annotations

import bisect
import math
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

from bastion.core.errors import InputError
from bastion.llm.normalize import MAX_SCAN_CHARS, TAIL_CHARS


@dataclass(frozen=True)
class PiiMatch:
    """One finding: its kind, offsets in the scanned text, and the matched value."""

    kind: str
    start: int
    end: int
    value: str
    secret: bool

    def to_dict(self) -> dict[str, object]:
        """JSON-ready, with the value masked (a report must not leak what it found)."""
        return {
            "kind": self.kind,
            "start": self.start,
            "end": self.end,
            "secret": self.secret,
            "preview": mask(self.value),
        }


def mask(value: str) -> str:
    """Keep the first two and last two characters of longer values, star the rest."""
    if len(value) <= 6:
        return "*" * len(value)
    return value[:2] + "*" * (len(value) - 4) + value[-2:]


def luhn_ok(digits: str) -> bool:
    """The Luhn checksum of payment card numbers."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 1:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return total % 10 == 0


_IBAN_LENGTHS = {
    "AD": 24,
    "AT": 20,
    "BE": 16,
    "BG": 22,
    "CH": 21,
    "CY": 28,
    "CZ": 24,
    "DE": 22,
    "DK": 18,
    "EE": 20,
    "ES": 24,
    "FI": 18,
    "FR": 27,
    "GB": 22,
    "GR": 27,
    "HR": 21,
    "HU": 28,
    "IE": 22,
    "IS": 26,
    "IT": 27,
    "LI": 21,
    "LT": 20,
    "LU": 20,
    "LV": 21,
    "MC": 27,
    "MT": 31,
    "NL": 18,
    "NO": 15,
    "PL": 28,
    "PT": 25,
    "RO": 24,
    "SE": 24,
    "SI": 19,
    "SK": 24,
    "SM": 27,
    "TR": 26,
}


def iban_ok(iban: str) -> bool:
    """ISO 13616 length for the country and the ISO 7064 mod-97 check."""
    compact = iban.replace(" ", "").upper()
    expected = _IBAN_LENGTHS.get(compact[:2])
    if expected is not None and len(compact) != expected:
        return False
    if not 15 <= len(compact) <= 34:
        return False
    rearranged = compact[4:] + compact[:4]
    number = "".join(str(int(ch, 36)) for ch in rearranged)
    return int(number) % 97 == 1


def ssn_ok(ssn: str) -> bool:
    """US SSN rules: area not 000, 666 or 9xx; group not 00; serial not 0000."""
    area, group, serial = ssn[:3], ssn[4:6], ssn[7:]
    return (
        area not in ("000", "666")
        and not area.startswith("9")
        and group != "00"
        and serial != "0000"
    )


_NINO_BAD_PREFIX = frozenset({"BG", "GB", "NK", "KN", "TN", "NT", "ZZ"})


def nino_ok(nino: str) -> bool:
    """UK NINO rules: no D, F, I, Q, U, V in the prefix, no O second, no reserved prefixes."""
    prefix = nino[:2].upper()
    return (
        prefix[0] not in "DFIQUV" and prefix[1] not in "DFIQUVO" and prefix not in _NINO_BAD_PREFIX
    )


_DNI_LETTERS = "TRWAGMYFPDXBNJZSQVHLCKE"


def dni_ok(dni: str) -> bool:
    """Spanish DNI / NIE: the check letter is the number mod 23."""
    value = dni.upper().replace("-", "").replace(" ", "")
    digits = value[:-1]
    if digits[0] in "XYZ":
        digits = str("XYZ".index(digits[0])) + digits[1:]
    return _DNI_LETTERS[int(digits) % 23] == value[-1]


def bsn_ok(bsn: str) -> bool:
    """Dutch BSN 11-test: sum(d_i * (9 - i)) - last digit is a multiple of 11."""
    digits = [int(c) for c in bsn]
    total = sum(d * (9 - i) for i, d in enumerate(digits[:8])) - digits[8]
    return total % 11 == 0 and total != 0


def entropy(value: str) -> float:
    """Shannon entropy in bits per character."""
    counts = Counter(value)
    return -sum(n / len(value) * math.log2(n / len(value)) for n in counts.values())


@dataclass(frozen=True)
class _Detector:
    kind: str
    pattern: re.Pattern[str]
    secret: bool
    valid: Callable[[str], bool] | None = None
    group: int = 0


def _digits(value: str) -> str:
    return re.sub(r"\D", "", value)


def _card_ok(value: str) -> bool:
    digits = _digits(value)
    return 13 <= len(digits) <= 19 and luhn_ok(digits) and len(set(digits)) > 1


def _phone_ok(value: str) -> bool:
    digits = _digits(value)
    return 9 <= len(digits) <= 15 and len(set(digits)) > 2


def _named_secret_ok(value: str) -> bool:
    return (
        len(value) >= 12
        and entropy(value) >= 3.3
        and bool(re.search(r"\d", value))
        and bool(re.search(r"[A-Za-z]", value))
    )


_DETECTORS: tuple[_Detector, ...] = (
    _Detector(
        "PRIVATE_KEY",
        re.compile(
            r"-----BEGIN (?:[A-Z]+ )?PRIVATE KEY-----[\s\S]{0,8000}?"
            r"-----END (?:[A-Z]+ )?PRIVATE KEY-----"
        ),
        True,
    ),
    _Detector("AWS_KEY", re.compile(r"\b(?:AKIA|ASIA|AGPA|AIDA|AROA)[0-9A-Z]{16}\b"), True),
    _Detector(
        "GITHUB_TOKEN",
        re.compile(r"\b(?:gh[pousr]_[A-Za-z0-9]{36,255}|github_pat_[A-Za-z0-9_]{22,255})\b"),
        True,
    ),
    _Detector("ANTHROPIC_KEY", re.compile(r"\bsk-ant-[A-Za-z0-9_-]{20,}"), True),
    _Detector("OPENAI_KEY", re.compile(r"\bsk-(?:proj-|svcacct-|admin-)?[A-Za-z0-9_-]{20,}"), True),
    _Detector("STRIPE_KEY", re.compile(r"\b(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{16,}\b"), True),
    _Detector("SLACK_TOKEN", re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}\b"), True),
    _Detector("GOOGLE_API_KEY", re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"), True),
    _Detector("HF_TOKEN", re.compile(r"\bhf_[A-Za-z0-9]{30,}\b"), True),
    _Detector(
        "JWT",
        re.compile(r"\beyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]{8,}\b"),
        True,
    ),
    _Detector(
        "SECRET",
        re.compile(
            r"(?i)\b(?:api[_-]?key|secret(?:[_-]?key)?|access[_-]?token|auth[_-]?token|token|password|passwd|pwd|client[_-]?secret)"
            r"\b[\"']?\s*[:=]\s*[\"']?([^\s\"',;]{12,200})"
        ),
        True,
        _named_secret_ok,
        group=1,
    ),
    _Detector(
        "EMAIL",
        re.compile(r"\b[A-Za-z0-9._%+-]{1,64}@(?:[A-Za-z0-9-]{1,63}\.)+[A-Za-z]{2,24}\b"),
        False,
    ),
    _Detector(
        "IBAN",
        re.compile(r"\b[A-Z]{2}\d{2}(?: ?[A-Z0-9]{4}){2,7}(?: ?[A-Z0-9]{1,4})?\b"),
        False,
        iban_ok,
    ),
    _Detector("CARD", re.compile(r"(?<![\d-])\d(?:[ -]?\d){12,18}(?![\d-])"), False, _card_ok),
    _Detector("SSN", re.compile(r"(?<![\d-])\d{3}-\d{2}-\d{4}(?![\d-])"), False, ssn_ok),
    _Detector("NINO", re.compile(r"\b[A-Z]{2} ?\d{2} ?\d{2} ?\d{2} ?[A-D]\b"), False, nino_ok),
    _Detector("DNI", re.compile(r"\b[XYZ]?\d{7,8}-?[A-Z]\b"), False, dni_ok),
    _Detector(
        "BSN",
        re.compile(r"(?i)\b(?:bsn|burgerservicenummer|sofinummer)\b\D{0,20}(\d{9})\b"),
        False,
        bsn_ok,
        group=1,
    ),
    _Detector(
        "PHONE",
        re.compile(
            r"(?<![\w+])\+\d{1,3}[ .-]?(?:\(\d{1,4}\)[ .-]?)?\d{1,4}(?:[ .-]?\d{2,4}){1,4}(?![\w-])"
            r"|(?<![\w(])\(\d{2,4}\)[ .-]?\d{3,4}[ .-]?\d{3,4}(?![\w-])"
            r"|(?<![\w.-])\d{3}[.-]\d{3}[.-]\d{4}(?![\w-])"
            r"|(?<![\w.-])0\d{2,4}[ -]\d{3,4}[ -]?\d{3,4}(?![\w-])"
        ),
        False,
        _phone_ok,
    ),
)


def scanned_parts(length: int) -> list[tuple[int, int]]:
    """The [start, end) ranges of a text of `length` characters that `find` searches."""
    if length <= MAX_SCAN_CHARS:
        return [(0, length)]
    return [(0, MAX_SCAN_CHARS - TAIL_CHARS), (length - TAIL_CHARS, length)]


def find(text: str) -> list[PiiMatch]:
    """Every finding, earlier detectors winning overlaps (secrets before cards before phones).

    Offsets are into `text`; see `scanned_parts` for what a very long text gets searched.
    """
    starts: list[int] = []  # the accepted findings' spans, disjoint, sorted by start
    ends: list[int] = []
    found: list[PiiMatch] = []
    for det in _DETECTORS:
        for first, last in scanned_parts(len(text)):
            for m in det.pattern.finditer(text, first, last):
                start, end = m.span(det.group)
                at = bisect.bisect_left(starts, end)  # spans starting before this one ends
                if at and ends[at - 1] > start:  # the latest of them reaches into it
                    continue
                value = m.group(det.group)
                if det.valid is not None and not det.valid(value):
                    continue
                starts.insert(at, start)
                ends.insert(at, end)
                found.append(PiiMatch(det.kind, start, end, value, det.secret))
    return sorted(found, key=lambda p: p.start)


@dataclass
class Redaction:
    """Redacted text and the placeholder -> value mapping to restore it."""

    text: str
    mapping: dict[str, str]
    matches: list[PiiMatch]

    def restore(self, text: str) -> str:
        """Put the original values back wherever a placeholder appears in `text`."""
        if not self.mapping:
            return text
        pattern = re.compile(
            "|".join(re.escape(k) for k in sorted(self.mapping, key=len, reverse=True))
        )
        return pattern.sub(lambda m: self.mapping[m.group(0)], text)


def redact(text: str, kinds: set[str] | None = None) -> Redaction:
    """Replace findings (of `kinds`, default all) with `[KIND_n]`; equal values share one.

    The whole text is redacted; a text over `MAX_SCAN_CHARS` is refused (an InputError)
    rather than returned with its middle unsearched.
    """
    if len(text) > MAX_SCAN_CHARS:
        raise InputError(
            f"the text has {len(text)} characters, over the {MAX_SCAN_CHARS} that can be redacted",
            fix="split it into smaller pieces",
        )
    matches = [m for m in find(text) if kinds is None or m.kind in kinds]
    by_value: dict[tuple[str, str], str] = {}
    counters: Counter[str] = Counter()
    pieces: list[str] = []
    cursor = 0
    for m in matches:
        key = (m.kind, m.value)
        if key not in by_value:
            counters[m.kind] += 1
            by_value[key] = f"[{m.kind}_{counters[m.kind]}]"
        pieces.append(text[cursor : m.start])
        pieces.append(by_value[key])
        cursor = m.end
    pieces.append(text[cursor:])
    return Redaction("".join(pieces), {v: k[1] for k, v in by_value.items()}, matches)
