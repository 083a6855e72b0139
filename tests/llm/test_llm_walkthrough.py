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
