"""AuditLog on SQLite: group commit, durability, checkpoints, proofs, records, keys."""

from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import stat
from pathlib import Path

import pytest
import sqlalchemy as sa
from audit_ref import mth, path
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from bastion.audit import (
    AuditRecordError,
    AuditUnavailable,
    SignedCheckpoint,
    canonical_json,
    leaf_hash,
    open_log,
    verify_consistency,
    verify_inclusion,
)
from bastion.audit.checkpoint import KEY_FILE
from bastion.core.errors import InputError


def _record(i: int) -> dict[str, object]:
    return {
        "time": f"2026-12-01T00:00:{i % 60:02d}Z",
        "tenant": "acme",
        "key_id": "k1",
        "model": "digits-cnn",
        "variant": "blue",
        "input_digest": f"{i:064x}",
        "output_digest": f"{i * 7:064x}",
        "decision": "allow",
        "latency_ms": 1.5,
    }


def _stored_entries(db: Path) -> list[bytes]:
    with sqlite3.connect(db) as conn:
        return [r[0].encode() for r in conn.execute("SELECT record FROM audit_leaves ORDER BY idx")]


def test_concurrent_appends_are_group_committed(home: Path) -> None:
    log = open_log()
    commits = 0

    def count(_conn: object) -> None:
        nonlocal commits
        commits += 1

    sa.event.listen(log._store.engine, "commit", count)

    async def run() -> list[int]:
        return await asyncio.gather(*(log.append(_record(i)) for i in range(300)))

    indexes = asyncio.run(run())
    assert sorted(indexes) == list(range(300))
    assert commits < 300 / 4, f"{commits} commits for 300 concurrent appends: no batching"
    # every returned index holds the record that was appended for it
    entries = _stored_entries(home / "audit.sqlite3")
    for i, index in enumerate(indexes):
        assert json.loads(entries[index])["input_digest"] == f"{i:064x}"
    assert log.verify().ok
    log.close()


def test_aclose_commits_what_is_queued_and_later_appends_are_refused(home: Path) -> None:
    log = open_log()

    async def run() -> list[int]:
        tasks = [asyncio.ensure_future(log.append(_record(i))) for i in range(50)]
        await asyncio.sleep(0)  # all queued, most not yet committed
        await log.aclose()
        return [await t for t in tasks]

    assert sorted(asyncio.run(run())) == list(range(50))
    with pytest.raises(AuditUnavailable, match="closed"):
        asyncio.run(log.append(_record(50)))
    reopened = open_log()
    assert reopened.size() == 50 and reopened.verify().ok
    reopened.close()


def test_append_returns_only_after_commit(home: Path) -> None:
    log = open_log()

    async def run() -> None:
        for i in range(5):
            index = await log.append(_record(i))
            # a separate connection (another process would see the same) already sees it
            with sqlite3.connect(home / "audit.sqlite3") as other:
                row = other.execute(
                    "SELECT record FROM audit_leaves WHERE idx = ?", (index,)
                ).fetchone()
            assert row is not None and json.loads(row[0])["seq"] == index

    asyncio.run(run())
    log.close()


def test_sqlite_runs_in_wal_mode_with_full_sync(home: Path) -> None:
    log = open_log()
    with log._store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    log.close()


def test_append_cost_does_not_grow_with_log_size(home: Path) -> None:
    """An append issues the same statements at 8 leaves and at 4096: no O(n) recompute."""
    log = open_log(checkpoint_interval_s=3600, checkpoint_every=10**9)
    statements: list[str] = []
    sa.event.listen(
        log._store.engine, "before_cursor_execute", lambda *a: statements.append(a[2].split()[0])
    )

    def one_append() -> list[str]:
        statements.clear()
        log.append_sync(_record(0))
        return list(statements)

    for i in range(7):
        log.append_sync(_record(i))
    small = one_append()  # leaf 7 completes three subtrees: the worst case so far
    log._store.append_batch([_record(i) for i in range(4095 - 8)])
    big = one_append()  # leaf 4095 completes twelve subtrees, still one insert
    assert big == small == ["SELECT", "INSERT", "INSERT", "UPDATE"]  # BEGIN goes to the driver
    log.close()


def test_checkpoints_are_signed_and_proofs_verify_against_them(home: Path) -> None:
    log = open_log()
    for i in range(11):
        log.append_sync(_record(i))
    cp11 = log.checkpoint()
    for i in range(11, 37):
        log.append_sync(_record(i))
    cp37 = log.checkpoint()
    assert cp37.verify(log.public_key)
    assert not cp37.verify(Ed25519PrivateKey.generate().public_key())
    entries = _stored_entries(home / "audit.sqlite3")
    assert cp11.root_hash == mth(entries[:11]) and cp37.root_hash == mth(entries)
    for index in (0, 5, 10, 36):
        for cp in (cp11, cp37) if index < 11 else (cp37,):
            p = log.inclusion_proof(index, cp.tree_size)
            assert p.path == path(index, entries[: cp.tree_size])
            assert p.root_hash == cp.root_hash
            assert verify_inclusion(
                leaf_hash(entries[index]), index, cp.tree_size, p.path, cp.root_hash
            )
    c = log.consistency_proof(11, 37)
    assert verify_consistency(11, 37, cp11.root_hash, cp37.root_hash, c.path)
    # a checkpoint survives a JSON round trip and still verifies
    again = SignedCheckpoint.from_dict(json.loads(json.dumps(cp37.to_dict())))
    assert again == cp37 and again.verify(log.public_key)
    result = log.verify()
    assert result.ok and result.tree_size == 37 and result.unsigned_leaves == 0
    log.close()


def test_a_checkpoint_is_signed_in_the_same_transaction_as_the_first_batch(home: Path) -> None:
    log = open_log(checkpoint_interval_s=3600)
    log.append_sync(_record(0))
    assert [c.tree_size for c in log.checkpoints()] == [1]
    for i in range(5):
        log.append_sync(_record(i))
    assert log.verify().unsigned_leaves == 5
    log.close()  # close signs the tail
    log = open_log()
    assert log.latest_checkpoint().tree_size == 6
    log.close()


def test_stored_record_is_canonical_and_carries_its_index(home: Path) -> None:
    log = open_log()
    log.append_sync({"b": 1, "a": "é", "nested": {"z": [1, 2.5, None, True]}})
    (entry,) = _stored_entries(home / "audit.sqlite3")
    assert entry == '{"a":"é","b":1,"nested":{"z":[1,2.5,null,true]},"seq":0}'.encode()
    assert entry == canonical_json(json.loads(entry))
    assert log.record(0)["seq"] == 0
    log.close()


@pytest.mark.parametrize(
    "record",
    [
        {"s": 1, "sep": [2], "seqa": None, "z": {"b": 1, "a": 2}, "é": "ü", "": 0},
        {"a": 1},
        {"z": 1},
        {},
    ],
)
def test_members_either_side_of_seq_are_stored_canonically(
    home: Path, record: dict[str, object]
) -> None:
    log = open_log()
    for _ in range(3):
        log.append_sync(record)
    entries = _stored_entries(home / "audit.sqlite3")
    assert entries == [canonical_json({**record, "seq": i}) for i in range(3)]
    log.close()


def _nested(levels: int) -> dict[str, object]:
    value: object = 1
    for _ in range(levels):
        value = {"n": value}
    return value  # type: ignore[return-value]


def test_records_nested_too_deeply_are_refused(home: Path) -> None:
    log = open_log()
    log.append_sync(_nested(8))
    with pytest.raises(AuditRecordError, match="deeper"):
        log.append_sync(_nested(9))
    with pytest.raises(AuditRecordError, match="deeper"):
        log.append_sync({"n": [[[[[[[[1]]]]]]]]})
    assert log.size() == 1
    log.close()


@pytest.mark.parametrize(
    "record",
    [
        {"api_key": "bst_live_123"},
        {"tenant": "a", "headers": {"Authorization": "Bearer x"}},
        {"password": "hunter2"},
        {"client_secret": "s"},
        {"token": "t"},
        {"private-key": "k"},
        {"totp": "123456"},
        {"items": [{"refresh_token": "r"}]},
    ],
)
def test_fields_named_like_secrets_are_refused(home: Path, record: dict[str, object]) -> None:
    log = open_log()
    with pytest.raises(AuditRecordError, match="looks like a secret"):
        log.append_sync(record)
    with pytest.raises(AuditRecordError):
        asyncio.run(log.append(record))
    assert log.size() == 0
    log.close()


def test_ids_and_digests_of_keys_are_fine(home: Path) -> None:
    log = open_log()
    log.append_sync({"key_id": "k1", "input_tokens": 3, "key": "model-a", "tokenizer": "bpe"})
    log.close()


@pytest.mark.parametrize(
    ("record", "match"),
    [
        ([1, 2], "JSON object"),
        ({"seq": 3}, "reserved"),
        ({"x": float("nan")}, "plain JSON"),
        ({"x": b"bytes"}, "plain JSON"),
        ({1: "int key"}, "not a string"),
        ({"x": "a" * 70_000}, "bytes"),
    ],
)
def test_malformed_records_are_refused(home: Path, record: object, match: str) -> None:
    log = open_log()
    with pytest.raises(AuditRecordError, match=match):
        log.append_sync(record)  # type: ignore[arg-type]
    log.close()


def test_a_bad_record_fails_alone_in_its_batch(home: Path) -> None:
    log = open_log()

    async def run() -> list[object]:
        good = [log.append(_record(i)) for i in range(10)]
        return await asyncio.gather(*good, log.append({"password": "x"}), return_exceptions=True)

    results = asyncio.run(run())
    assert sorted(results[:10]) == list(range(10))  # type: ignore[type-var]
    assert isinstance(results[10], AuditRecordError)
    log.close()


def test_signing_key_is_private_and_reused(home: Path) -> None:
    log = open_log()
    public = log.public_key
    log.close()
    key_path = home / KEY_FILE
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600
    log = open_log()
    assert log.public_key == public
    log.close()
    os.chmod(key_path, 0o644)
    with pytest.raises(InputError, match="readable by other users"):
        open_log()


def test_export_jsonl_roundtrips_to_the_signed_root(home: Path, tmp_path: Path) -> None:
    log = open_log()
    for i in range(13):
        log.append_sync(_record(i))
    cp = log.checkpoint()
    out = tmp_path / "audit.jsonl"
    assert log.export_jsonl(out) == 13
    log.close()
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    entries = [canonical_json(line["record"]) for line in lines]
    assert [line["index"] for line in lines] == list(range(13))
    assert all(
        leaf_hash(e).hex() == line["leaf_hash"] for e, line in zip(entries, lines, strict=True)
    )
    assert mth(entries) == cp.root_hash


def test_a_damaged_head_stops_appends(home: Path) -> None:
    log = open_log()
    log.append_sync(_record(0))
    with sqlite3.connect(home / "audit.sqlite3") as conn:
        conn.execute("UPDATE audit_head SET frontier = x'00'")
    with pytest.raises(AuditUnavailable, match="damaged"):
        asyncio.run(log.append(_record(1)))
    with sqlite3.connect(home / "audit.sqlite3") as conn:
        conn.execute("DELETE FROM audit_head")
    with pytest.raises(AuditUnavailable, match="damaged"):
        log.append_sync(_record(1))
    assert not log.verify().ok
    log.close()


def test_process_durability_uses_synchronous_normal(home: Path) -> None:
    log = open_log(durability="process")
    with log._store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    log.append_sync(_record(0))
    assert log.verify().ok
    log.close()


def test_verify_sees_a_consistent_snapshot_while_appends_continue(home: Path) -> None:
    import threading

    log = open_log(durability="process")
    for i in range(50):
        log.append_sync(_record(i))
    done = threading.Event()

    def writer() -> None:
        for i in range(150):
            log.append_sync(_record(i))
        done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    results = []
    while not done.is_set():
        results.append(log.verify())
    thread.join()
    assert all(r.ok for r in results), [r.messages() for r in results if not r.ok]
    assert len(results) >= 1 and log.verify().tree_size == 200
    log.close()
