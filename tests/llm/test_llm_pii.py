"""PII and secrets: checksums accept real numbers, reject near misses; redaction round-trips."""

from __future__ import annotations

import pytest

from bastion.core.errors import InputError
from bastion.llm import pii


def _kinds(text: str) -> list[str]:
    return [m.kind for m in pii.find(text)]


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("write to jane.doe+x@mail.example.co.uk today", "EMAIL"),
        ("call +1 (415) 555-0132", "PHONE"),
        ("call 020 7946 0958", "PHONE"),
        ("card 4111 1111 1111 1111", "CARD"),
        ("card 5500-0000-0000-0004", "CARD"),
        ("IBAN GB82 WEST 1234 5698 7654 32", "IBAN"),
        ("IBAN DE89370400440532013000", "IBAN"),
        ("SSN 123-45-6789", "SSN"),
        ("NINO AB 12 34 56 C", "NINO"),
        ("DNI 12345678Z", "DNI"),
        ("NIE X1234567L", "DNI"),
        ("mijn BSN is 111222333", "BSN"),
        ("AKIAIOSFODNN7EXAMPLE", "AWS_KEY"),
        ("ghp_abcdefghijklmnopqrstuvwxyz0123456789", "GITHUB_TOKEN"),
        ("sk-proj-abcDEF1234567890ghiJKL", "OPENAI_KEY"),
        ("xoxb-1234567890-abcdefghij", "SLACK_TOKEN"),
        (
            "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjM0NTY3ODkwIn0.dozjgNryP4J3jVmNHl0w5N_XgL0n3I9PlFUP0THsR8U",
            "JWT",
        ),
        ("api_key = 'Zx9fQ2mLp8Rt4vWs'", "SECRET"),
        (
            "-----BEGIN RSA PRIVATE KEY-----\nMIIBOgIBAAJBAK\n-----END RSA PRIVATE KEY-----",
            "PRIVATE_KEY",
        ),
    ],
)
def test_detects(text: str, kind: str) -> None:
    assert kind in _kinds(text)


@pytest.mark.parametrize(
    ("text", "kind"),
    [
        ("card 4111 1111 1111 1112", "CARD"),  # Luhn fails
        ("IBAN GB82 WEST 1234 5698 7654 33", "IBAN"),  # mod 97 fails
        ("SSN 666-45-6789", "SSN"),  # area 666 never issued
        ("SSN 123-00-6789", "SSN"),
        ("NINO QQ 12 34 56 C", "NINO"),  # Q never a prefix letter
        ("DNI 12345678A", "DNI"),  # wrong check letter
        ("mijn BSN is 111222334", "BSN"),  # 11-test fails
        ("password = 'aaaaaaaaaaaaaaaa'", "SECRET"),  # no entropy
    ],
)
def test_rejects_near_misses(text: str, kind: str) -> None:
    assert kind not in _kinds(text)


def test_ordinary_numbers_are_not_pii() -> None:
    assert _kinds("On 2022-02-09 we sold 1,234.56 kg; order 12345, version 1.2.3") == []


def test_redaction_round_trip_and_shared_placeholders() -> None:
    text = (
        "Mail jane@example.com, again jane@example.com, or bob@example.org; card 4111111111111111."
    )
    red = pii.redact(text)
    assert "jane@example.com" not in red.text and "4111111111111111" not in red.text
    assert red.text.count("[EMAIL_1]") == 2 and "[EMAIL_2]" in red.text and "[CARD_1]" in red.text
    assert red.restore(red.text) == text
    assert red.restore("Reply sent to [EMAIL_2].") == "Reply sent to bob@example.org."


def test_redaction_by_kind_and_masked_report() -> None:
    red = pii.redact("jane@example.com 4111111111111111", kinds={"CARD"})
    assert red.text.startswith("jane@example.com")
    assert red.matches[0].to_dict()["preview"] == "41************11"


def test_checksum_helpers() -> None:
    assert pii.luhn_ok("79927398713") and not pii.luhn_ok("79927398710")
    assert pii.iban_ok("NL91ABNA0417164300") and not pii.iban_ok("NL91ABNA0417164301")
    assert pii.dni_ok("00000000T") and pii.bsn_ok("111222333")


_FILLER = "The committee reviewed the quarterly numbers and agreed on next steps. "


def _long_text_with_pii_in_the_middle() -> tuple[str, str, str]:
    """About 2 million characters with an e-mail and an IBAN in the very middle."""
    half = _FILLER * ((pii.MAX_SCAN_CHARS - 200) // len(_FILLER) // 2)
    email, iban = "jane.doe@example.org", "GB82 WEST 1234 5698 7654 32"
    return f"{half} Contact {email}, IBAN {iban}. {half}", email, iban


def test_pii_anywhere_in_a_multi_megabyte_text_is_found_and_redacted() -> None:
    # regression: only the first 48k and last 16k characters were searched, and `redact`
    # returned that excerpt instead of the text
    text, email, iban = _long_text_with_pii_in_the_middle()
    assert len(text) > 1_900_000
    found = pii.find(text)
    assert [(m.kind, text[m.start : m.end]) for m in found] == [("EMAIL", email), ("IBAN", iban)]
    assert found[0].start > 900_000  # offsets into the original text
    red = pii.redact(text)
    assert len(red.text) == len(text) - len(email) - len(iban) + len("[EMAIL_1][IBAN_1]")
    assert email not in red.text and red.restore(red.text) == text


def test_dense_findings_stay_linear() -> None:
    # one finding every 16 characters: overlaps are resolved by bisection, not pairwise
    text = "id 123-45-6789, " * 120_000
    found = pii.find(text)
    assert len(found) == 120_000 and {m.kind for m in found} == {"SSN"}


def test_text_over_the_scan_cap_searches_head_and_tail_and_is_not_redacted() -> None:
    key = "AKIAIOSFODNN7EXAMPLE"
    text = key + " " + "lorem ipsum " * 200_000 + key + " middle " + "lorem ipsum " * 200_000
    text += key
    parts = pii.scanned_parts(len(text))
    assert len(text) > pii.MAX_SCAN_CHARS and len(parts) == 2 and parts[1][1] == len(text)
    found = pii.find(text)
    assert [m.start for m in found] == [0, len(text) - len(key)]  # the middle one: not searched
    with pytest.raises(InputError, match="over the 2000000"):
        pii.redact(text)
