"""PII and secrets: checksums accept real numbers, reject near misses; redaction round-trips."""

from __future__ import annotations

import pytest

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
