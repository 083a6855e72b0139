"""Patterns for known direct-injection, jailbreak-persona and prompt-leak phrasing.

Rules run on normalised text (see `normalize.py`), so spacing, confusables and encodings do
not hide a phrase. Each rule has a weight in [0, 1]: how sure a match alone makes us. The
learned head also sees per-category rule counts as features.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

CATEGORIES = ("injection", "jailbreak", "leak")
CHUNK = 8_192  # characters matched at a time
OVERLAP = 512  # longer than any phrase a rule matches, so none is lost at a chunk edge
MAX_HITS = 32  # hits kept per rule (the score counts distinct rules)

_PRIOR = (
    r"(?:all\s+)?(?:of\s+)?(?:the\s+|your\s+|my\s+|any\s+)?"
    r"(?:previous|prior|above|earlier|preceding|former|original|initial|foregoing|old|system)"
)
_ORDERS = (
    r"(?:instructions?|prompts?|directions?|directives?|rules|guidelines|context|commands?"
    r"|orders|tasks?|messages?|text|input|constraints)"
)

# a phrase right after "not" / "n't" / "never" is a prohibition, not an order
_UNLESS_NEGATED = r"(?<!not\s)(?<!n't\s)(?<!never\s)"
_DISMISS = r"(?:ignore|disregard|forget|override|bypass|neglect|abandon|discard|dismiss)"
_TRANSLATED_IGNORE = (
    # German
    r"(?:ignor\w*|vergiss\w*|vergessen|missacht\w*)\s+(?:\w+\s+){0,3}(?:vorherig|bisherig|obig|vorig|früher)\w*\s+(?:\w+\s+)?(?:anweisung|instruktion|befehl|anordnung|regel)\w*",
    # French
    r"(?:ignor\w*|oubli\w*|ne\s+tenez\s+pas\s+compte\s+d)\s+(?:\w+\s+){0,2}(?:instructions|consignes|directives)\s+(?:pr[ée]c[ée]dentes|ant[ée]rieures)",
    # Spanish, Portuguese, Italian
    r"(?:ignor\w*|olvid\w*|esque[cç]\w*|dimentic\w*|haz\s+caso\s+omiso\s+de)\s+(?:\w+\s+){0,3}(?:instrucciones|indicaciones|instru[çc][õo]es|istruzioni|indicazioni)\s+(?:anteriores|previas|prévias|precedentes|precedenti)",
    # Dutch, Indonesian, Tagalog, Vietnamese, Turkish, Russian
    r"negeer\s+(?:\w+\s+){0,2}(?:vorige|eerdere)\s+instructies",
    r"(?:abaikan|lupakan)\s+(?:\w+\s+){0,2}(?:instruksi|petunjuk|perintah)\s+(?:sebelumnya|di\s+atas|anda|kamu)",
    r"(?:huwag\s+pansinin|balewalain|kalimutan)\s+(?:ang\s+)?(?:lahat\s+ng\s+)?(?:mga\s+)?(?:nakaraang|naunang|iyong)\s+(?:mga\s+)?(?:tagubilin|instruksyon|panuto|utos)",
    r"(?:bỏ\s+qua|phớt\s+lờ|quên)\s+(?:\w+\s+){0,3}(?:hướng\s+dẫn|chỉ\s+dẫn|chỉ\s+thị|lệnh)\s+(?:trước|của\s+bạn|ở\s+trên)",
    r"(?:önceki|yukarıdaki|tüm)\s+(?:\w+\s+)?talimat\w*\s+(?:\w+\s+)?(?:yok\s+say|görmezden|unut)",
    r"(?:игнорир\w*|проигнорир\w*|забудь\w*|забудьте)\s+(?:\w+\s+)?(?:предыдущ\w*|прошл\w*|прежн\w*|свои|ваши|твои|все)\s+(?:\w+\s+)?(?:инструкци|указани|правил)\w*",
    # Chinese, Japanese, Korean
    r"(?:忽略|忽视|无视|忘记|忘掉|不要理会)(?:之前|以前|先前|上面|上述|前面|所有|你的|全部)的?(?:所有)?(?:说明|指示|指令|命令|规则)",
    r"(?:以前|前|上記|これまで|全て|すべて)の(?:指示|命令|指令)を?(?:無視|忘れ)",
    r"(?:이전|위의?|모든|앞의)\s*(?:지시|지침|명령)(?:사항)?(?:을|를)?\s*(?:무시|잊)",
    # Hindi, Arabic, Thai, Bengali
    r"(?:पिछले|पिछली|ऊपर|अपने|सभी)\s+(?:के\s+)?(?:निर्देश\w*)\s+(?:\S+\s+){0,2}(?:अनदेखा|अनदेखी|नज़रअंदाज़|नजरअंदाज|भूल)",
    r"(?:تجاهل|انس|أهمل)\s+(?:\S+\s+){0,1}(?:التعليمات|الأوامر|التوجيهات)\s+(?:السابقة|أعلاه)",
    r"(?:ละเว้น|เพิกเฉย|ลืม|ไม่สนใจ|อย่าสนใจ)\s*.{0,24}?(?:คำสั่ง|คําสั่ง|คำแนะนำ)\s*(?:ก่อนหน้า|ข้างต้น|ทั้งหมด|เดิม)",
    r"(?:পূর্ববর্তী|আগের|পূর্বের)\s+(?:সমস্ত\s+)?নির্দেশ\w*\s+(?:\S+\s+)?(?:উপেক্ষা|ভুলে)",
)
_OBEY = (
    r"(?:and\s+(?:then\s+)?|then\s+)"
    r"(?:follow|obey|execute|do\s+what\s+it\s+says|carry\s+out|comply\s+with|act\s+on|run)\b"
)


@dataclass(frozen=True)
class Rule:
    """One named pattern, its category and how much a match alone counts."""

    name: str
    category: str
    weight: float
    pattern: re.Pattern[str]


@dataclass(frozen=True)
class RuleHit:
    """A rule that matched, where (offsets in the scanned text) and in which view."""

    rule: str
    category: str
    weight: float
    start: int
    end: int
    view: str


def _r(name: str, category: str, weight: float, pattern: str) -> Rule:
    return Rule(name, category, weight, re.compile(pattern, re.IGNORECASE))


RULES: tuple[Rule, ...] = (
    # direct and indirect injection
    _r(
        "ignore-previous",
        "injection",
        0.97,
        rf"\b(?:ignore|disregard|forget|skip|override|bypass|neglect|drop|abandon)\s+(?:about\s+)?(?:everything\s+|what\s+)?{_PRIOR}\s*(?:\w+\s+){{0,2}}{_ORDERS}",
    ),
    _r(
        "ignore-your-instructions",
        "injection",
        0.9,
        rf"{_UNLESS_NEGATED}\b{_DISMISS}\s+(?:all\s+)?(?:of\s+)?(?:your|the\s+system'?s?)\s+(?:\w+\s+)?(?:instructions?|rules|guidelines|programming|directives?|prompts?|constraints)\b",
    ),
    _r(
        "forget-what-told",
        "injection",
        0.7,
        r"\b(?:ignore|disregard|forget)\s+(?:everything|all)\s+(?:that\s+)?you\s*(?:'ve|have|were)?\s*(?:been\s+)?(?:told|instructed|programmed)\b",
    ),
    # "ignore the previous instructions" in the languages machine-translated attacks use
    _r("ignore-previous-translated", "injection", 0.9, "|".join(_TRANSLATED_IGNORE)),
    _r(
        "decode-and-follow",
        "injection",
        0.9,
        rf"\b(?:decode|decrypt|decipher|unscramble|apply\s+rot-?13\s+to)\b[^.\n]{{0,80}}?\b{_OBEY}"
        rf"|\b(?:read|convert|translate|reverse|interpret)\b[^.\n]{{0,60}}?\b(?:backwards?|reversed|hex|hexadecimal|base\s*64|binary|ascii|rot-?13|morse|cipher|encoded)\b[^.\n]{{0,40}}?\b{_OBEY}"
        r"|\b(?:follow|obey|execute)\s+(?:it|them|this|that)\s+as\s+(?:your|a)\s+(?:new\s+)?instructions?\b",
    ),
    _r(
        "response-injection",
        "injection",
        0.6,
        r"\b(?:include|add|insert|integrate|incorporate|append|embed|mention|put|end|begin|start|sign)\b[^.\n]{0,100}?\b(?:in|into|to|within|at\s+the\s+(?:end|start|beginning)\s+of|off)\s+(?:your|each|every|the)\s+(?:\w+\s+)?(?:response|reply|answer|output|responses|replies|answers)\b",
    ),
    _r(
        "ignore-and-say",
        "injection",
        0.75,
        r"\b(?:ignore|disregard|forget)\s+(?:the|this|that|your|all|any)\s+(?:\w+\s+){0,2}?(?:and|,)\s+(?:instead\s+)?(?:say|state|write|print|output|respond|reply|tell|type|declare|admit)\b",
    ),
    _r(
        "authority-claim",
        "injection",
        0.7,
        r"\b(?:admin(?:istrator)?|developer|root|sudo|system|maintenance|debug)\s+override\b"
        r"|\b(?:i\s+am|i'm)\s+(?:god|your\s+(?:creator|developer|admin|administrator|owner|master))\b(?!'s)",
    ),
    _r(
        "ignore-above",
        "injection",
        0.9,
        r"\b(?:ignore|disregard|forget)\s+(?:all\s+|everything\s+)?(?:the\s+|that\s+)?(?:above|before|said|previous|prior|earlier)\b",
    ),
    _r(
        "forget-everything",
        "injection",
        0.85,
        r"\bforget\s+(?:everything|all)\s+(?:you|that|i|we)\b",
    ),
    _r(
        "new-instructions",
        "injection",
        0.85,
        r"\b(?:new|updated|real|actual|true|revised|secret|hidden|additional)\s+(?:system\s+)?(?:instructions?|task|directive|orders?)\s*(?:are|is|:|follow)",
    ),
    _r(
        "instead-do",
        "injection",
        0.6,
        r"\binstead\s*,?\s+(?:of\s+\w+ing\s+)?(?:you\s+(?:should|must|will)\s+)?(?:say|print|output|respond|reply|write|answer|tell|return)\b",
    ),
    _r(
        "stop-task",
        "injection",
        0.7,
        r"\b(?:stop|cease|abort|end)\s+(?:what\s+you\s+are\s+doing|the\s+current\s+task|your\s+(?:current\s+)?task|summariz\w+|translat\w+)",
    ),
    _r(
        "regardless-previous",
        "injection",
        0.75,
        rf"\b(?:regardless|irrespective)\s+of\s+{_PRIOR}\s*(?:\w+\s+)?{_ORDERS}",
    ),
    _r(
        "do-not-follow",
        "injection",
        0.85,
        rf"\b(?:do\s+not|don'?t|never)\s+(?:follow|obey|listen\s+to|adhere\s+to)\s+{_PRIOR}?\s*(?:\w+\s+)?{_ORDERS}",
    ),
    _r(
        "from-now-on",
        "injection",
        0.55,
        r"\b(?:from\s+now\s+on|henceforth|for\s+the\s+rest\s+of\s+(?:this|the)\s+conversation)\b[^.\n]{0,40}\b(?:you|your|respond|answer|reply|act)\b",
    ),
    _r(
        "fake-system-turn",
        "injection",
        0.9,
        r"(?:<\|?(?:im_start|system|endoftext)\|?>|\[/?(?:system|inst)\]|^\s*#{2,}\s*(?:system|instruction|new\s+task)|\bsystem\s*(?:override|message|prompt|note|update)\s*:|\bend\s+of\s+(?:the\s+)?(?:document|email|context|input|user\s+input)\b)",
    ),
    _r(
        "ai-addressed",
        "injection",
        0.7,
        r"\b(?:attention|note|message|important|instruction)\s+(?:to|for)\s+(?:the\s+)?(?:ai|assistant|llm|language\s+model|chatbot|model|gpt|bot)\b",
    ),
    _r(
        "exfil-link",
        "injection",
        0.8,
        r"!\[[^\]]{0,40}\]\(\s*https?://[^)\s]{0,200}(?:\?|&)[^)\s]{0,40}=\s*(?:\{|\$|<|%7B)",
    ),
    # jailbreak personas
    _r(
        "dan",
        "jailbreak",
        0.9,
        r"\b(?:DAN|STAN|DUDE|AIM|BetterDAN|AntiGPT|DevMode)\b.{0,80}\b(?:do\s+anything|no\s+(?:rules|limits|restrictions|filters?)|unfiltered|amoral|jailbr\w+|stands\s+for)",
    ),
    _r("do-anything-now", "jailbreak", 0.95, r"\bdo\s+anything\s+now\b"),
    _r(
        "developer-mode",
        "jailbreak",
        0.85,
        r"\b(?:developer|dev|god|jailbreak|jailbroken|unrestricted|unfiltered|evil|opposite|chaos|debug)\s+mode\b",
    ),
    _r(
        "no-restrictions",
        "jailbreak",
        0.8,
        r"\b(?:without|free\s+(?:of|from)|no|not\s+bound\s+by|bypass(?:es|ing)?|break(?:s|ing)?\s+free\s+of|ignor(?:e|es|ing))\s+(?:any\s+|all\s+|the\s+)?(?:typical\s+|usual\s+|ethical\s+|moral\s+|legal\s+|openai'?s?\s+|content\s+|safety\s+)*(?:restrictions|limitations|filters?|filtering|censorship|guidelines|policies|polic(?:y)|constraints|boundaries|morals|ethics|safeguards)",
    ),
    _r(
        "never-refuse",
        "jailbreak",
        0.8,
        r"\b(?:never|not|cannot|can'?t|won'?t|will\s+not)\s+(?:ever\s+)?(?:refuse|decline|deny|say\s+no|reject)\b|\bnever\s+(?:apologi[sz]e|warn|include\s+(?:any\s+)?(?:warnings?|disclaimers?))",
    ),
    _r(
        "stay-in-character",
        "jailbreak",
        0.75,
        r"\b(?:stay|remain|keep)\s+in\s+character\b|\bbreak(?:ing)?\s+character\b",
    ),
    _r(
        "persona-unbound",
        "jailbreak",
        0.8,
        r"\b(?:you\s+are|act\s+as|pretend\s+(?:to\s+be|you\s+are)|roleplay\s+as|simulate|you\s+will\s+be|become)\b[^.\n]{0,80}\b(?:unfiltered|uncensored|unrestricted|amoral|immoral|unethical|evil|no\s+(?:rules|morals|ethics|limits)|without\s+(?:any\s+)?(?:rules|morals|ethics|limits))",
    ),
    _r(
        "two-responses",
        "jailbreak",
        0.7,
        r"\b(?:two|2|both)\s+(?:different\s+)?(?:responses|answers|paragraphs|ways)\b[^.\n]{0,120}\b(?:normal|classic|jailbr\w+|unfiltered|developer|dan)\b",
    ),
    _r(
        "hypothetical-bypass",
        "jailbreak",
        0.5,
        r"\b(?:hypothetical(?:ly)?|fictional|in\s+a\s+story|purely\s+for\s+(?:educational|research)\s+purposes)\b[^.\n]{0,80}\b(?:no\s+(?:rules|restrictions|limits)|anything|illegal|unethical)",
    ),
    _r(
        "openai-policy",
        "jailbreak",
        0.6,
        r"\b(?:openai|anthropic|content)\s*(?:'s)?\s+(?:content\s+)?polic(?:y|ies)\b",
    ),
    _r("jailbreak-word", "jailbreak", 0.55, r"\bjailbr(?:eak|oken|eaking)\b"),
    # prompt leak
    _r(
        "reveal-prompt",
        "leak",
        0.9,
        r"\b(?:reveal|show|print|repeat|output|display|give|tell|share|write|list|disclose|spell|dump|leak|recite|provide|echo)\s+(?:me\s+|us\s+)?(?:out\s+)?(?:all\s+|exactly\s+|verbatim\s+)?(?:of\s+)?(?:your|the|its)\s+(?:full\s+|entire\s+|complete\s+|original\s+|exact\s+|hidden\s+|secret\s+|initial\s+|internal\s+)*(?:system\s+|initial\s+|original\s+|hidden\s+|pre-?)?(?:prompts?|instructions|directives|configuration|rules)\b",
    ),
    _r(
        "leak-target",
        "leak",
        0.7,
        r"\b(?:your|the)\s+(?:system|initial|starting|original|hidden|secret|internal|pre-?)\s*(?:prompt|instructions|configuration|message|directives)\b"
        r"|\b(?:instructions|rules|prompt)\s+(?:you\s+were|you've\s+been|you\s+have\s+been)\s+(?:given|told|provided)"
        r"|\binitiali[sz]ation\s+(?:string|text|prompt|above)\b|\bsystem_?prompt\b"
        r"|\bwhat\s+(?:were|have)\s+you\s+(?:been\s+)?(?:told|instructed|programmed)\b|\bi\s+was\s+(?:instructed|told|programmed)\s+to\b",
    ),
    _r(
        "complete-leak",
        "leak",
        0.85,
        r"\bcomplete\s+(?:this|the\s+following)\s+(?:sentence|phrase|text)\b[^\n]{0,40}?\b(?:i\s+was\s+(?:instructed|told|programmed)|my\s+(?:instructions|prompt|rules)|(?:the|your)\s+system\s+prompt)",
    ),
    _r(
        "what-is-prompt",
        "leak",
        0.75,
        r"\bwhat\s+(?:is|are|was|were)\s+(?:your|the)\s+(?:system\s+|initial\s+|original\s+|hidden\s+|secret\s+)+(?:prompts?|instructions|rules|messages?)",
    ),
    _r(
        "repeat-above",
        "leak",
        0.85,
        r"\b(?:repeat|print|output|reproduce|copy|return|recite|echo)\s+(?:all\s+|everything\s+|the\s+)?(?:words?|text|everything|content|lines?|sentences?|messages?)?\s*(?:above|before\s+this|preceding|prior|so\s+far|verbatim)",
    ),
    _r(
        "secret-ask",
        "leak",
        0.6,
        rf"{_UNLESS_NEGATED}\b(?:what\s+is|what'?s|tell\s+me|give\s+me|share|reveal|show|provide|spell|need|write|say|type|print|encode|translate)\s+(?:me\s+)?(?:the\s+|your\s+|our\s+)(?:system\s+|secret\s+|admin\s+|confidential\s+)*(?:password|passcode|pass\s*phrase|secret\s*(?:key|code|word)?|api\s+key|access\s+code|pin)\b",
    ),
    _r(
        "starts-with-you-are",
        "leak",
        0.7,
        r"\b(?:begin|start)(?:ning|s)?\s+(?:your\s+(?:reply|answer|response)\s+)?with\s+[\"']?(?:you\s+are|sure|certainly)",
    ),
)


def match(text: str, view: str = "text") -> list[RuleHit]:
    """Every rule match in `text` (one hit per rule and position, at most `MAX_HITS` per rule).

    Long texts are matched chunk by chunk (`CHUNK` characters, overlapping by `OVERLAP`), so
    the whole text is covered while the work of any one match attempt stays bounded.
    """
    hits: list[RuleHit] = []
    for rule in RULES:
        seen = 0
        for start in range(0, max(1, len(text)), CHUNK):
            end = min(len(text), start + CHUNK + OVERLAP)
            for m in rule.pattern.finditer(text, start, end):
                if m.start() >= start + CHUNK:
                    break  # the next chunk reports matches starting in the overlap
                hits.append(
                    RuleHit(rule.name, rule.category, rule.weight, m.start(), m.end(), view)
                )
                seen += 1
                if seen >= MAX_HITS:
                    break
            if seen >= MAX_HITS:
                break
    return hits


def rule_score(hits: list[RuleHit]) -> float:
    """Noisy-OR of the distinct rules that matched: several weak rules add up."""
    miss = 1.0
    for name in {h.rule for h in hits}:
        weight = next(h.weight for h in hits if h.rule == name)
        miss *= 1.0 - weight
    return 1.0 - miss


def category_counts(hits: list[RuleHit]) -> dict[str, int]:
    """Number of distinct rules matched per category."""
    return {c: len({h.rule for h in hits if h.category == c}) for c in CATEGORIES}
