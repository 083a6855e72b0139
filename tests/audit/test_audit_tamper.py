"""Editing, deleting, inserting or reordering rows is caught by `bastion audit verify`."""

from __future__ import annotations

import json
import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest

from bastion.audit import SignedCheckpoint, canonical_json, leaf_hash, open_log
from bastion.audit.merkle import Frontier
from bastion.cli.main import main

N = 30


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A log of 30 records with signed checkpoints at sizes 1, 10, 20 and 30 (built once)."""
    state = tmp_path_factory.mktemp("audit-template")
    log = open_log(state_dir=state, checkpoint_interval_s=3600)
    for i in range(N):
        log.append_sync({"tenant": "acme", "n": i, "decision": "allow"})
        if i + 1 in (10, 20, 30):
            log.checkpoint()
    log.close()
    return state


@pytest.fixture
def db(home: Path, template: Path) -> Path:
    """A private copy of the template log in this test's state dir."""
    shutil.copytree(template, home, dirs_exist_ok=True)
    return home / "audit.sqlite3"


def _verify(home: Path, capsys: pytest.CaptureFixture[str], *extra: str) -> tuple[int, str]:
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "verify", "--state-dir", str(home), *extra])
    captured = capsys.readouterr()
    return int(exit_info.value.code or 0), captured.out + captured.err


def _sql(db: Path, *statements: tuple[str, tuple[object, ...]]) -> None:
    with sqlite3.connect(db) as conn:
        for sql, args in statements:
            conn.execute(sql, args)


def _rewrite_consistently(
    db: Path, edit: Callable[[list[dict[str, object]]], list[dict[str, object]]]
) -> None:
    """An attacker with full database access but no signing key: rewrite the records,
    then recompute every leaf hash, cached node and the tree head so all of it agrees."""
    with sqlite3.connect(db) as conn:
        records = [
            json.loads(r) for (r,) in conn.execute("SELECT record FROM audit_leaves ORDER BY idx")
        ]
        records = edit(records)
        conn.execute("DELETE FROM audit_leaves")
        conn.execute("DELETE FROM audit_nodes")
        frontier = Frontier()
        for i, record in enumerate(records):
            data = canonical_json({**record, "seq": i})
            digest = leaf_hash(data)
            conn.execute("INSERT INTO audit_leaves VALUES (?, ?, ?)", (i, data.decode(), digest))
            for level, idx, h in frontier.append(digest):
                conn.execute("INSERT INTO audit_nodes VALUES (?, ?, ?)", (level, idx, h))
        conn.execute(
            "UPDATE audit_head SET size = ?, root = ?, frontier = ?",
            (frontier.size, frontier.root(), frontier.to_bytes()),
        )


def test_untouched_log_verifies(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out = _verify(home, capsys)
    assert (
        code == 0 and f"ok: {N} leaves" in out and "4 checkpoints checked" in out
    )  # 1 (first batch), 10, 20, 30


@pytest.mark.parametrize("index", [0, 17, N - 1])
def test_edited_record_names_its_index(
    db: Path, home: Path, capsys: pytest.CaptureFixture[str], index: int
) -> None:
    _sql(
        db,
        (
            "UPDATE audit_leaves SET record = replace(record, 'allow', 'deny') WHERE idx = ?",
            (index,),
        ),
    )
    code, out = _verify(home, capsys)
    assert code == 1
    assert f"error: leaf {index}: the record does not match its stored hash" in out


def test_edited_record_with_a_recomputed_leaf_hash(
    db: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    forged = canonical_json({"decision": "deny", "n": 12, "seq": 12, "tenant": "acme"})
    _sql(
        db,
        (
            "UPDATE audit_leaves SET record = ?, leaf_hash = ? WHERE idx = 12",
            (forged.decode(), leaf_hash(forged)),
        ),
    )
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaves 10..19 do not match the checkpoint signed at size 20" in out


def test_non_canonical_edit(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(db, ("UPDATE audit_leaves SET record = replace(record, ',', ', ') WHERE idx = 3", ()))
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaf 3: the stored record is not canonical JSON" in out


@pytest.mark.parametrize("index", [0, 12, N - 1])
def test_deleted_row(db: Path, home: Path, capsys: pytest.CaptureFixture[str], index: int) -> None:
    _sql(db, ("DELETE FROM audit_leaves WHERE idx = ?", (index,)))
    code, out = _verify(home, capsys)
    assert code == 1
    expected = f"error: leaf {index} is missing"
    assert expected in out


def test_swapped_rows(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(
        db,
        ("UPDATE audit_leaves SET idx = -1 WHERE idx = 5", ()),
        ("UPDATE audit_leaves SET idx = 5 WHERE idx = 8", ()),
        ("UPDATE audit_leaves SET idx = 8 WHERE idx = -1", ()),
    )
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaf 5: the record says it is leaf 8 (rows reordered" in out


def test_swapped_record_contents(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with sqlite3.connect(db) as conn:
        (a,) = conn.execute("SELECT record FROM audit_leaves WHERE idx = 21").fetchone()
        (b,) = conn.execute("SELECT record FROM audit_leaves WHERE idx = 22").fetchone()
        conn.execute("UPDATE audit_leaves SET record = ? WHERE idx = 21", (b,))
        conn.execute("UPDATE audit_leaves SET record = ? WHERE idx = 22", (a,))
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaf 21:" in out


def test_reordered_and_consistently_rehashed(
    db: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def swap(records: list[dict[str, object]]) -> list[dict[str, object]]:
        records[14], records[15] = records[15], records[14]
        return records

    _rewrite_consistently(db, swap)
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaves 10..19 do not match the checkpoint signed at size 20" in out


def test_inserted_row_in_the_middle(
    db: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with sqlite3.connect(db) as conn:
        for idx in range(N - 1, 7, -1):
            conn.execute("UPDATE audit_leaves SET idx = idx + 1 WHERE idx = ?", (idx,))
        forged = canonical_json({"decision": "allow", "n": 999, "seq": 8, "tenant": "acme"})
        conn.execute(
            "INSERT INTO audit_leaves VALUES (8, ?, ?)", (forged.decode(), leaf_hash(forged))
        )
    code, out = _verify(home, capsys)
    assert code == 1 and "error: leaf 9: the record says it is leaf 8" in out


def test_appended_row_at_the_end(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    forged = canonical_json({"decision": "allow", "n": 999, "seq": N, "tenant": "acme"})
    _sql(db, ("INSERT INTO audit_leaves VALUES (?, ?, ?)", (N, forged.decode(), leaf_hash(forged))))
    code, out = _verify(home, capsys)
    assert code == 1 and f"error: leaf {N} is not in the tree: the log holds {N + 1} leaves" in out


def test_truncated_tail_with_a_fixed_up_head(
    db: Path, home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _rewrite_consistently(db, lambda records: records[:25])
    code, out = _verify(home, capsys)
    assert (
        code == 1
        and "error: leaf 25 is missing: the log was truncated (a checkpoint signs 30 leaves" in out
    )


def test_deleted_checkpoints(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(db, ("DELETE FROM audit_checkpoints", ()))
    code, out = _verify(home, capsys)
    assert code == 1 and "no valid signed checkpoint" in out


def test_forged_checkpoint(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(db, ("UPDATE audit_checkpoints SET root = ? WHERE tree_size = 20", (b"\x00" * 32,)))
    code, out = _verify(home, capsys)
    assert code == 1 and "checkpoint at size 20 has an invalid signature" in out


def test_an_external_checkpoint_catches_a_full_rewrite(
    db: Path, home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Rewriting the tail and deleting the checkpoints that cover it passes the stored
    evidence; a checkpoint kept elsewhere still catches it."""
    kept = tmp_path / "cp.json"
    with pytest.raises(SystemExit):
        main(["audit", "checkpoint", "--state-dir", str(home), "--out", str(kept)])
    _rewrite_consistently(db, lambda records: records[:20])
    _sql(db, ("DELETE FROM audit_checkpoints WHERE tree_size > 20", ()))
    _sql(db, ("UPDATE audit_head SET cp_size = 20", ()))
    assert _verify(home, capsys)[0] == 0
    code, out = _verify(home, capsys, "--checkpoint", str(kept))
    assert (
        code == 1
        and "error: leaf 20 is missing: the log was truncated (a checkpoint signs 30" in out
    )
    assert SignedCheckpoint.load(kept).tree_size == N


def test_damaged_proof_cache(db: Path, home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _sql(db, ("UPDATE audit_nodes SET hash = ? WHERE level = 2 AND idx = 1", (b"\x11" * 32,)))
    code, out = _verify(home, capsys)
    assert code == 1 and "error: the cached hash of leaves 4..7 is wrong" in out
    with pytest.raises(SystemExit) as exit_info:
        main(["audit", "prove", "0", "--state-dir", str(home)])  # its path uses that subtree
    assert exit_info.value.code == 1
    assert "does not verify" in capsys.readouterr().err
