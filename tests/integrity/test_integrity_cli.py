"""The integrity commands end to end: passphrases, exit codes, JSON output, atomic decrypt."""

from __future__ import annotations

import json
import os
import shutil
import stat
from pathlib import Path

import pytest
from integrity_helpers import make_model

from bastion.cli.main import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as caught:
        main(args)
    out, err = capsys.readouterr()
    return int(caught.value.code or 0), out, err


@pytest.fixture()
def passfile(tmp_path: Path) -> Path:
    path = tmp_path / "pass.txt"
    path.write_text("s3cret passphrase\n")
    return path


@pytest.mark.parametrize(
    "algorithm", ["ecdsa-p256", "ed25519", "ml-dsa-65", "hybrid", "x25519-mlkem768"]
)
def test_keygen_encrypts_private_keys_by_default(
    tmp_path: Path, passfile: Path, algorithm: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(
        [
            "keygen",
            "-a",
            algorithm,
            "--out",
            str(tmp_path / "k"),
            "--passphrase-file",
            str(passfile),
        ],
        capsys,
    )
    assert code == 0 and "passphrase-encrypted" in out
    private = (tmp_path / "k" / "private.pem").read_bytes()
    assert b"ENCRYPTED PRIVATE KEY" in private and b"BEGIN PRIVATE KEY" not in private
    assert stat.S_IMODE(os.stat(tmp_path / "k" / "private.pem").st_mode) == 0o600
    assert (tmp_path / "k" / "public.pem").read_bytes().startswith(b"-----BEGIN PUBLIC KEY-----")
    code, _, err = run(
        ["keygen", "-a", algorithm, "--out", str(tmp_path / "k"), "--no-passphrase"], capsys
    )
    assert code == 2 and "already exists" in err


def test_no_passphrase_source_without_a_terminal_is_a_usage_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(["keygen", "--out", str(tmp_path / "k")], capsys)
    assert code == 2 and "BASTION_PASSPHRASE" in err
    assert not (tmp_path / "k" / "private.pem").exists()


def test_sign_verify_with_env_passphrase_and_json_output(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("BASTION_PASSPHRASE", "pipeline secret")
    keydir, model = tmp_path / "k", make_model(tmp_path)
    assert run(["keygen", "-a", "hybrid", "--out", str(keydir)], capsys)[0] == 0
    code, out, _ = run(["sign", str(model), "--key", str(keydir / "private.pem")], capsys)
    assert code == 0 and "signed 4 files with hybrid" in out
    code, out, _ = run(
        ["verify", str(model), "--key", str(keydir / "public.pem"), "--format", "json"], capsys
    )
    report = json.loads(out)
    assert (
        code == 0
        and report["verified"]
        and report["algorithm"] == "hybrid"
        and report["files"] == 4
    )
    (model / "config.json").write_text("{}")
    (model / "dropped").write_text("x")
    code, out, _ = run(
        ["verify", str(model), "--key", str(keydir / "public.pem"), "--format", "json"], capsys
    )
    report = json.loads(out)
    assert code == 1 and not report["verified"]
    assert report["changed"] == ["config.json"] and report["extra"] == ["dropped"]
    code, out, err = run(["verify", str(model), "--key", str(keydir / "public.pem")], capsys)
    assert (
        code == 1 and "changed: config.json" in out and "extra: dropped" in out and "error:" in err
    )


def test_wrong_passphrase_for_the_signing_key(
    tmp_path: Path, passfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keydir, model = tmp_path / "k", make_model(tmp_path)
    run(
        ["keygen", "-a", "ed25519", "--out", str(keydir), "--passphrase-file", str(passfile)],
        capsys,
    )
    wrong = tmp_path / "wrong.txt"
    wrong.write_text("not it")
    code, _, err = run(
        ["sign", str(model), "--key", str(keydir / "private.pem"), "--passphrase-file", str(wrong)],
        capsys,
    )
    assert code == 2 and "wrong passphrase" in err
    assert not (model / "model.sig").exists()


def test_verify_error_exit_codes_in_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keydir, model = tmp_path / "k", make_model(tmp_path)
    run(["keygen", "-a", "ml-dsa-65", "--out", str(keydir), "--no-passphrase"], capsys)
    run(["keygen", "-a", "ed25519", "--out", str(tmp_path / "k2"), "--no-passphrase"], capsys)
    run(["sign", str(model), "--key", str(keydir / "private.pem")], capsys)
    code, out, _ = run(
        ["verify", str(model), "--key", str(tmp_path / "k2" / "public.pem"), "--format", "json"],
        capsys,
    )
    assert code == 1 and "ml-dsa-65" in json.loads(out)["error"]
    code, out, _ = run(["verify", str(model), "--key", str(keydir / "private.pem")], capsys)
    assert code == 2


def test_encrypt_decrypt_with_recipient_and_passphrase(
    tmp_path: Path, passfile: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keydir, model = tmp_path / "k", make_model(tmp_path)
    run(["keygen", "-a", "x25519-mlkem768", "--out", str(keydir), "--no-passphrase"], capsys)
    code, _, _ = run(
        [
            "encrypt",
            str(model),
            "--recipient",
            str(keydir / "public.pem"),
            "--passphrase-file",
            str(passfile),
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "model0.enc").is_dir()
    code, _, _ = run(
        [
            "decrypt",
            str(tmp_path / "model0.enc"),
            "--key",
            str(keydir / "private.pem"),
            "--out",
            str(tmp_path / "by-key"),
        ],
        capsys,
    )
    assert (
        code == 0
        and (tmp_path / "by-key" / "sub" / "layer.bin").read_bytes()
        == (model / "sub" / "layer.bin").read_bytes()
    )
    code, _, err = run(
        [
            "decrypt",
            str(tmp_path / "model0.enc"),
            "--passphrase",
            "--passphrase-file",
            str(passfile),
        ],
        capsys,
    )
    assert code == 2 and "already exists" in err  # the default output is the original directory
    shutil.rmtree(model)
    code, _, _ = run(
        [
            "decrypt",
            str(tmp_path / "model0.enc"),
            "--passphrase",
            "--passphrase-file",
            str(passfile),
        ],
        capsys,
    )
    assert code == 0 and (tmp_path / "model0" / "config.json").exists()
    code, _, err = run(
        ["decrypt", str(tmp_path / "model0.enc"), "--out", str(tmp_path / "x")], capsys
    )
    assert code == 2 and "--key" in err


def test_decrypt_of_altered_file_exits_1_and_writes_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    keydir = tmp_path / "k"
    run(["keygen", "-a", "x25519-mlkem768", "--out", str(keydir), "--no-passphrase"], capsys)
    (tmp_path / "w.bin").write_bytes(os.urandom(3 << 20))
    run(["encrypt", str(tmp_path / "w.bin"), "--recipient", str(keydir / "public.pem")], capsys)
    enc = tmp_path / "w.bin.enc"
    data = bytearray(enc.read_bytes())
    data[len(data) // 2] ^= 4
    enc.write_bytes(bytes(data))
    (tmp_path / "w.bin").unlink()
    before = set(tmp_path.iterdir())
    code, _, err = run(["decrypt", str(enc), "--key", str(keydir / "private.pem")], capsys)
    assert code == 1 and "failed to authenticate" in err
    assert set(tmp_path.iterdir()) == before


def test_prompt_repeats_until_nonempty_and_confirmed(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The terminal prompt (Typer-free, for the hot `sign` command) behaves as Typer's did."""
    import getpass

    from bastion.cli.passphrase import _prompt

    answers = iter(["", "first", "typo", "first", "first"])
    monkeypatch.setattr(getpass, "getpass", lambda prompt="": next(answers))
    assert _prompt("Passphrase: ", confirm=True) == "first"
    assert "do not match" in capsys.readouterr().err
