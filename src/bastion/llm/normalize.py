"""Normalisation: undo the tricks that hide an attack from pattern and embedding checks.

`normalize(text)` returns the canonical text (NFKC, confusable letters mapped to Latin,
invisible characters removed), the signals seen on the way (invisible characters, Unicode tag
smuggling, mixed-script words), and extra *views*: text decoded from base64 / hex / URL-encoded
segments, ROT13, reversed, leetspeak, spaced-out letters, and text smuggled in Unicode tag
characters. Every view is scored in clear by the rules and the classifier.

Work is bounded: inputs up to `MAX_SCAN_CHARS` are canonicalised whole (callers treat longer
ones as unscannable; here only their head and tail are kept), decoded views share a budget of
`MAX_SCAN_CHARS` characters, the whole-text transforms (ROT13, reversed, leetspeak) read the
head and tail (`MAX_CHARS`), at most `MAX_VIEWS` views are produced, decoding recurses twice.
"""

from __future__ import annotations

import base64
import binascii
import codecs
import re
import unicodedata
import urllib.parse
from dataclasses import dataclass, field

MAX_CHARS = 64_000
TAIL_CHARS = 16_000
MAX_SCAN_CHARS = 2_000_000  # above this an input is unscannable (scan.py flags it)
MAX_VIEWS = 6
_MIN_SEGMENT = 16

# Characters with no visible glyph that attackers use to split keywords or hide text.
_INVISIBLE = frozenset(
    [
        *(0x00AD, 0x034F, 0x061C, 0x115F, 0x1160, 0x17B4, 0x17B5, 0x180E, 0x3164, 0xFEFF, 0xFFA0),
        *range(0x200B, 0x2010),
        *range(0x202A, 0x202F),
        *range(0x2060, 0x2070),
        *range(0xFE00, 0xFE10),
    ]
)
_TAG_FIRST, _TAG_LAST = 0xE0000, 0xE007F
# Any character `_strip_invisible` acts on; text without one passes through unchanged.
_SPECIAL = re.compile(
    "[" + "".join(re.escape(chr(cp)) for cp in sorted(_INVISIBLE)) + "\U000e0000-\U000e007f]"
)
_BLACK_FLAG = 0x1F3F4  # emoji subdivision flags legitimately use tag characters after it
_CANCEL_TAG = 0xE007F
_FLAG_TAGS = 7  # at most seven tag characters between the black flag and the cancel tag

# Latin look-alikes from Cyrillic, Greek and other scripts that NFKC leaves alone.
_CONFUSABLES = str.maketrans(
    "аеорсухіјѕԁһӏԛԝɡɑАВЕКМНОРСТХУЅІЈοανικρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧϲϳℓ",
    "aeopcyxijsdhlqwgaABEKMHOPCTXYSIJoavikptuxABEZHIKMNOPTYXcjl",
)
_CONFUSABLE_CHARS = frozenset("аеорсухіјѕԁһӏԛԝɡɑАВЕКМНОРСТХУЅІЈοανικρτυχΑΒΕΖΗΙΚΜΝΟΡΤΥΧϲϳℓ")
_CONFUSABLE_RE = re.compile("[" + "".join(sorted(_CONFUSABLE_CHARS)) + "]")
_LEET = str.maketrans("013457@$!|", "oieastasil")

# Frequent words of English instructions: a decoding that produces them reads better.
# fmt: off
_COMMON = frozenset({
    "the", "and", "you", "your", "to", "of", "is", "are", "in", "that", "it", "for", "this",
    "with", "be", "not", "on", "as", "do", "what", "all", "ignore", "previous", "instructions",
    "prompt", "system", "say", "tell", "me", "please", "now", "from", "write", "print", "can",
    "will", "if", "or", "have", "my", "an", "at", "by", "how", "should", "must", "any", "rules",
    "reveal", "password", "secret",
})
# fmt: on

_BASE64 = re.compile(r"(?<![A-Za-z0-9+/=_-])[A-Za-z0-9+/_-]{16,}={0,2}(?![A-Za-z0-9+/=_-])")
_HEX = re.compile(r"(?<![0-9A-Fa-f])(?:[0-9A-Fa-f]{2}(?:[\s:,]|\\x|0x)?){8,}")
_URL_ESCAPE = re.compile(r"%[0-9A-Fa-f]{2}")
_SPACED = re.compile(r"(?:(?<!\S)\S(?: {1,3}|$)){6,}")


@dataclass(frozen=True)
class View:
    """Text recovered from part of the input.

    `method` says how it was recovered; `start`/`end` say where (offsets in the canonical text).
    """

    method: str
    text: str
    start: int
    end: int


@dataclass
class Normalized:
    """The canonical text, the views decoded from it, and the evasion signals seen."""

    original_length: int
    text: str
    views: list[View] = field(default_factory=list)
    signals: dict[str, int] = field(default_factory=dict)
    truncated: bool = False

    def all_texts(self) -> list[tuple[str, str]]:
        """(method, text) for the canonical text and every view."""
        return [("text", self.text), *((v.method, v.text) for v in self.views)]


def bound(text: str, limit: int = MAX_CHARS) -> tuple[str, bool]:
    """The head and tail of an over-long input (`limit` characters in all): bounded work."""
    if len(text) <= limit:
        return text, False
    tail = min(TAIL_CHARS, limit // 4)
    return text[: limit - tail] + "\n" + text[-tail:], True


def _word_hits(text: str) -> int:
    return sum(1 for w in re.findall(r"[a-z]+", text.lower()[:4000]) if w in _COMMON)


def _printable(data: bytes) -> str | None:
    """Decoded bytes as text if they look like text, else None."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text:
        return None
    good = sum(1 for ch in text if ch.isprintable() or ch in "\n\r\t")
    letters = sum(1 for ch in text if ch.isalpha())
    return text if good >= 0.95 * len(text) and letters >= 0.4 * len(text) else None


def _flag_length(text: str, i: int) -> int:
    """Length of the emoji subdivision flag starting at `text[i]`, or 0 if there is none.

    A real flag is U+1F3F4, one to seven tag digits or lowercase tag letters, then the
    cancel tag (for example gbeng, gbsct, gbwls); any other tag run is smuggling.
    """
    if ord(text[i]) != _BLACK_FLAG:
        return 0
    j = i + 1
    while j < len(text) and j - i <= _FLAG_TAGS and _is_flag_tag(ord(text[j])):
        j += 1
    if j == i + 1 or j >= len(text) or ord(text[j]) != _CANCEL_TAG:
        return 0
    return j + 1 - i


def _is_flag_tag(cp: int) -> bool:
    return 0xE0030 <= cp <= 0xE0039 or 0xE0061 <= cp <= 0xE007A


def _is_emoji(ch: str) -> bool:
    """A pictograph that zero-width joiner sequences (family, profession emoji) join."""
    cp = ord(ch)
    return 0x1F000 <= cp <= 0x1FAFF or 0x2190 <= cp <= 0x2BFF


def _strip_invisible(text: str, signals: dict[str, int]) -> tuple[str, str]:
    """Remove invisible and tag characters; return (visible text, text smuggled in tags).

    Emoji subdivision flags and zero-width joiners between emoji are kept and not signalled.
    """
    if text.isascii() or not _SPECIAL.search(text):
        return text, ""
    out: list[str] = []
    hidden: list[str] = []
    i, n = 0, len(text)
    while i < n:
        ch = text[i]
        cp = ord(ch)
        flag = _flag_length(text, i) if cp == _BLACK_FLAG else 0
        if flag:
            out.append(text[i : i + flag])
            i += flag
            continue
        if _TAG_FIRST <= cp <= _TAG_LAST:
            signals["unicode-tags"] = signals.get("unicode-tags", 0) + 1
            if 0xE0020 <= cp <= 0xE007E:
                hidden.append(chr(cp - 0xE0000))
        elif (cp == 0x200D and _joins_emoji(text, i)) or (
            cp == 0xFE0F and i > 0 and _is_emoji(text[i - 1])
        ):
            out.append(ch)  # part of an emoji sequence
        elif cp in _INVISIBLE:
            if cp != 0xFEFF or out:  # a leading byte-order mark is not smuggling
                signals["invisible"] = signals.get("invisible", 0) + 1
        else:
            out.append(ch)
        i += 1
    return "".join(out), "".join(hidden)


def _joins_emoji(text: str, i: int) -> bool:
    """True when the zero-width joiner at `i` joins two emoji (a variation selector may precede)."""
    before = i - 1
    if before >= 0 and text[before] == "\ufe0f":
        before -= 1
    if before < 0 or i + 1 >= len(text):
        return False
    return _is_emoji(text[before]) and _is_emoji(text[i + 1])


def _map_confusables(text: str, signals: dict[str, int]) -> str:
    """Map look-alike letters to Latin inside words that mix them with Latin letters."""
    if text.isascii() or not _CONFUSABLE_RE.search(text):
        return text

    def fix(match: re.Match[str]) -> str:
        word = match.group(0)
        if any(ch in _CONFUSABLE_CHARS for ch in word) and any(
            "a" <= ch.lower() <= "z" for ch in word
        ):
            signals["confusables"] = signals.get("confusables", 0) + 1
            return word.translate(_CONFUSABLES)
        return word

    return re.sub(r"\w+", fix, text)


def canonical(text: str, signals: dict[str, int] | None = None) -> tuple[str, str]:
    """NFKC + invisible/tag removal + confusable mapping; returns (text, tag-smuggled text)."""
    sig = signals if signals is not None else {}
    visible, hidden = _strip_invisible(text, sig)
    if not visible.isascii():
        folded = unicodedata.normalize("NFKC", visible)
        if folded != visible:
            sig["nfkc"] = sig.get("nfkc", 0) + 1
        visible = _map_confusables(folded, sig)
    return visible, hidden


def _decode_segments(text: str) -> list[tuple[str, str, int, int]]:
    """(method, decoded, start, end) for encoded segments inside `text`."""
    found: list[tuple[str, str, int, int]] = []
    for m in _BASE64.finditer(text):
        seg = m.group(0)
        if len(seg) < _MIN_SEGMENT or not re.search(r"[0-9+/=]|[a-z][A-Z]", seg):
            continue
        raw = seg.replace("-", "+").replace("_", "/")
        try:
            data = base64.b64decode(raw + "=" * (-len(raw) % 4), validate=False)
        except (binascii.Error, ValueError):
            continue
        decoded = _printable(data)
        if decoded is not None:
            found.append(("base64", decoded, m.start(), m.end()))
    for m in _HEX.finditer(text):
        digits = re.sub(r"\\x|0x|[\s:,]", "", m.group(0))
        if len(digits) % 2:
            digits = digits[:-1]
        try:
            decoded = _printable(bytes.fromhex(digits))
        except ValueError:
            continue
        if decoded is not None:
            found.append(("hex", decoded, m.start(), m.end()))
    if len(_URL_ESCAPE.findall(text)) >= 3:
        decoded = urllib.parse.unquote(text, errors="replace")
        if decoded != text:
            found.append(("url", decoded, 0, len(text)))
    return found


def _rot13_vowels(sample: str) -> bool:
    """True when the Latin letters read as ROT13 of a vowel-rich language, any language.

    ROT13 sends a e i o u to n r v b h: plain Latin-script text has about 40% vowels, its
    ROT13 about 15%. This catches ROT13 of French or Tagalog, which the English word list
    cannot; random strings (base64, identifiers) are low in both and do not trigger.
    """
    letters = [unicodedata.normalize("NFD", ch)[0] for ch in sample.lower() if ch.isalpha()]
    latin = [ch for ch in letters if "a" <= ch <= "z"]  # accented letters count as their base
    if len(latin) < 12 or len(latin) < 0.5 * len(letters):
        return False
    vowels = sum(ch in "aeiou" for ch in latin) / len(latin)
    hidden = sum(ch in "nrvbh" for ch in latin) / len(latin)
    return vowels < 0.25 and hidden >= 0.3


def _whole_text_views(text: str) -> list[View]:
    """ROT13, reversed and leetspeak, when they read better than the text."""
    views: list[View] = []
    sample = text[:4000]
    base = _word_hits(sample)
    if sum(ch.isascii() and ch.isalpha() for ch in sample) >= 12:
        rot = codecs.decode(text, "rot13")
        if _word_hits(rot) >= max(3, 2 * base) or _rot13_vowels(sample):
            views.append(View("rot13", rot, 0, len(text)))
        rev = text[::-1]
        if _word_hits(rev) >= max(3, 2 * base):
            views.append(View("reversed", rev, 0, len(text)))
    mixed = re.findall(r"\b(?=\w*[a-zA-Z])(?=\w*[013457@$])[\w@$]{3,}\b", sample)
    if len(mixed) >= 3:
        views.append(View("leetspeak", text.translate(_LEET), 0, len(text)))
    return views


def _spaced_views(text: str) -> list[View]:
    """Spaced-out letters ("i g n o r e") joined back into words, anywhere in the text."""
    views: list[View] = []
    for m in _SPACED.finditer(text):
        if len(views) >= MAX_VIEWS:
            break
        joined = re.sub(r" {2,}", "\x00", m.group(0)).replace(" ", "").replace("\x00", " ")
        views.append(View("spaced", joined, m.start(), m.end()))
    return views


def normalize(text: str) -> Normalized:
    """Canonical text, decoded views and evasion signals for one input (bounded work)."""
    scanned, truncated = bound(text, MAX_SCAN_CHARS)
    signals: dict[str, int] = {}
    clean, hidden = canonical(scanned, signals)
    result = Normalized(original_length=len(text), text=clean, signals=signals, truncated=truncated)
    views: list[View] = []
    if hidden.strip():
        views.append(View("unicode-tags", hidden, 0, len(scanned)))
    queue = [(clean, 0)]
    while queue and len(views) < MAX_VIEWS:
        current, depth = queue.pop(0)
        for method, decoded, start, end in _decode_segments(current):
            plain, _ = canonical(decoded, signals)
            view = View(method if depth == 0 else f"{method}(nested)", plain, start, end)
            views.append(view)
            signals[f"encoded-{method}"] = signals.get(f"encoded-{method}", 0) + 1
            if depth < 1:
                queue.append((plain, depth + 1))
    # a URL-encoded text is read through its decoding: its escapes are not leetspeak, and
    # ROT13 or spacing tricks inside it show only once decoded
    whole = next((v.text for v in views if v.method == "url"), clean)
    head_tail, _ = bound(whole)
    views.extend(_whole_text_views(head_tail))
    views.extend(_spaced_views(whole))
    result.views, cut = _within_budget(views[:MAX_VIEWS])
    result.truncated = truncated or cut
    return result


def _within_budget(views: list[View]) -> tuple[list[View], bool]:
    """Views whose texts total at most `MAX_SCAN_CHARS` (later ones cut to head and tail)."""
    kept: list[View] = []
    left, cut = MAX_SCAN_CHARS, False
    for view in views:
        body, was_cut = bound(view.text, max(MAX_CHARS, left))
        kept.append(View(view.method, body, view.start, view.end) if was_cut else view)
        left -= len(body)
        cut = cut or was_cut
    return kept, cut
