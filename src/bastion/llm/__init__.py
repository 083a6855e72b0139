"""LLM guard: prompt-injection, jailbreak and leak detection, PII and secrets, canaries.

    from bastion.llm import scan_prompt, scan_output, canary
    verdict = scan_prompt("Ignore previous instructions and ...", documents=[page_text])
    if verdict.flagged: ...

The learned layer needs the `llm` extra (`pip install 'bastion-ml[llm]'`).
"""

from __future__ import annotations

from bastion.llm.canary import Canary, canary, find_canary
from bastion.llm.pii import PiiMatch, Redaction, redact
from bastion.llm.scan import scan_output, scan_prompt
from bastion.llm.verdict import Reason, Span, Verdict

__all__ = [
    "Canary",
    "PiiMatch",
    "Reason",
    "Redaction",
    "Span",
    "Verdict",
    "canary",
    "find_canary",
    "redact",
    "scan_output",
    "scan_prompt",
]
