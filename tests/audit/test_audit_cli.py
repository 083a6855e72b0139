"""`bastion audit prove|consistency|export|checkpoint`, checked by an outside verifier."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from audit_ref import mth
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.serialization import load_pem_private_key

from bastion.audit import canonical_json, leaf_hash, open_log, verify_consistency, verify_inclusion
from bastion.audit.checkpoint import KEY_FILE
from bastion.cli.main import main


@pytest.fixture
def log_home(home: Path) -> Path:
    log = open_log(checkpoint_interval_s=3600)
    for i in range(19):
        log.append_sync({"tenant": "acme", "n": i, "decision": "allow"})
        if i + 1 == 7:
            log.checkpoint()
    log.close()  # signs size 19
    return home


def _run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(list(args))
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out, captured.err


def _public_key(home: Path) -> object:
    key = load_pem_private_key((home / KEY_FILE).read_bytes(), password=None)
    assert isinstance(key, Ed25519PrivateKey)
    return key.public_key()


def _entries(home: Path, capsys: pytest.CaptureFixture[str]) -> list[bytes]:
    code, out, _ = _run(capsys, "audit", "export")  # BASTION_HOME finds the state dir
    assert code == 0
    return [canonical_json(json.loads(line)["record"]) for line in out.splitlines()]


def test_prove_prints_a_proof_an_outsider_can_check(
    log_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _entries(log_home, capsys)
    code, out, _ = _run(capsys, "audit", "prove", "11")
    assert code == 0
    doc = json.loads(out)
    cp, proof = doc["checkpoint"], doc["proof"]
    assert doc["record"]["n"] == 11 and cp["tree_size"] == 19 == proof["tree_size"]
    root = bytes.fromhex(cp["root_hash"])
    assert root == mth(entries)
    leaf = leaf_hash(canonical_json(doc["record"]))
    assert verify_inclusion(leaf, 11, 19, [bytes.fromhex(h) for h in proof["path"]], root)
    root_b64 = base64.b64encode(root).decode()
    body = f"{cp['format']}\n{cp['log_id']}\n19\n{root_b64}\n{cp['timestamp_ms']}\n"
    _public_key(log_home).verify(base64.b64decode(cp["signature"]), body.encode())  # type: ignore[attr-defined]


def test_prove_against_an_older_checkpoint(
    log_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _entries(log_home, capsys)
    code, out, _ = _run(capsys, "audit", "prove", "3", "--size", "7")
    doc = json.loads(out)
    assert code == 0 and doc["checkpoint"]["tree_size"] == 7
    assert bytes.fromhex(doc["proof"]["root_hash"]) == mth(entries[:7])


def test_consistency_between_two_checkpoints(
    log_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    entries = _entries(log_home, capsys)
    code, out, _ = _run(capsys, "audit", "consistency", "7", "19")
    assert code == 0
    doc = json.loads(out)
    old, new = doc["checkpoints"]["old"], doc["checkpoints"]["new"]
    assert bytes.fromhex(old["root_hash"]) == mth(entries[:7])
    assert bytes.fromhex(new["root_hash"]) == mth(entries)
    path = [bytes.fromhex(h) for h in doc["proof"]["path"]]
    assert verify_consistency(7, 19, mth(entries[:7]), mth(entries), path)


def test_export_to_a_file_and_checkpoint(
    log_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out_file = tmp_path / "out" / "audit.jsonl"
    code, _, err = _run(
        capsys, "audit", "export", "--out", str(out_file), "--state-dir", str(log_home)
    )
    assert code == 0 and "wrote 19 records" in err
    assert len(out_file.read_text().splitlines()) == 19
    code, out, _ = _run(capsys, "audit", "checkpoint")
    assert code == 0 and json.loads(out)["tree_size"] == 19


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["audit", "prove", "19"], "leaf 19 is not in the log (19 leaves)"),
        (["audit", "prove", "3", "--size", "5"], "no checkpoint of size 5 covers leaf 3"),
        (["audit", "prove", "--", "-1"], "leaf -1 is not in the log"),
        (["audit", "consistency", "12", "7"], "old size 12"),
        (["audit", "consistency", "3", "99"], "tree size 99"),
    ],
)
def test_bad_arguments_exit_2(
    log_home: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code, _, err = _run(capsys, *args)
    assert code == 2 and message in err


def test_no_log_is_a_usage_error(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _run(capsys, "audit", "verify", "--state-dir", str(tmp_path / "nothing"))
    assert code == 2 and "no audit signing key" in err and "fix:" in err
    assert not (tmp_path / "nothing").exists()  # nothing created by looking


def test_a_missing_store_file_is_not_created(
    log_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    missing = tmp_path / "typo.sqlite3"
    code, _, err = _run(capsys, "audit", "verify", "--store", str(missing))
    assert code == 2 and f"no audit log at {missing}" in err
    assert not missing.exists()


def test_the_gateway_url_variable_finds_a_postgres_log(
    home: Path, pg_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    log = open_log(pg_url)
    for i in range(5):
        log.append_sync({"tenant": "acme", "n": i})
    log.close()
    monkeypatch.setenv("BASTION_AUDIT__URL", pg_url)
    code, out, _ = _run(capsys, "audit", "verify")
    assert code == 0 and out.startswith("ok: 5 leaves")
