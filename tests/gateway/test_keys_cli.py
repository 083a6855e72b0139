"""`bastion keys`: create, list, rotate, revoke, mfa-enroll against a state directory."""

from __future__ import annotations

import json
from pathlib import Path

import pyotp
import pytest

from bastion.cli.main import main
from bastion.core.errors import UsageError
from bastion.gateway.keystore import KeyStore
from bastion.gateway.store import open_engine, server_secret


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


def store(state: Path) -> KeyStore:
    return KeyStore(open_engine(None, state), server_secret(state), cache_seconds=0)


def test_keys_lifecycle(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    state = str(tmp_path)
    code, raw, err = run(
        capsys,
        "keys",
        "create",
        "--name",
        "ci",
        "--role",
        "operator",
        "--tenant",
        "acme",
        "--expires",
        "30d",
        "--state-dir",
        state,
    )
    assert code == 0 and "shown once" in err
    raw = raw.strip()
    key_id = raw.split("_")[1]
    assert store(tmp_path).authenticate(raw).role == "operator"

    code, out, _ = run(capsys, "keys", "list", "--json", "--state-dir", state)
    listed = json.loads(out)
    assert listed[0]["key_id"] == key_id and listed[0]["status"] == "active"
    assert raw.split("_", 2)[2] not in out

    png = tmp_path / "qr.png"
    code, uri, _ = run(capsys, "keys", "mfa-enroll", key_id, "--qr", str(png), "--state-dir", state)
    assert (
        code == 0
        and uri.startswith("otpauth://totp/")
        and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    )
    totp = pyotp.parse_uri(uri.strip())
    store(tmp_path).verify_totp(key_id, totp.now(), 5, 60)

    code, new_raw, _ = run(capsys, "keys", "rotate", key_id, "--state-dir", state)
    assert code == 0
    fresh = store(tmp_path)
    principal = fresh.authenticate(new_raw.strip())
    assert (principal.role, principal.tenant, principal.mfa_enrolled) == ("operator", "acme", True)
    code, out, _ = run(capsys, "keys", "list", "--state-dir", state)
    assert "revoked" in out and "active" in out

    code, _, _ = run(capsys, "keys", "revoke", principal.key_id, "--state-dir", state)
    assert code == 0
    with pytest.raises(Exception) as exc:
        store(tmp_path).authenticate(new_raw.strip())
    assert getattr(exc.value, "code", None) == "revoked_key"


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "root"], "unknown role"),
        (["--expires", "yesterday"], "cannot read expiry"),
        (["--expires", "2001-01-01"], "in the past"),
    ],
)
def test_bad_create_arguments(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, out, err = run(
        capsys, "keys", "create", "--name", "x", *args, "--state-dir", str(tmp_path)
    )
    assert code == UsageError.exit_code and message in err and out == ""


def test_unknown_key_id(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, "keys", "revoke", "0123456789abcdef", "--state-dir", str(tmp_path))
    assert code == 2 and "no key with id" in err and "fix:" in err
