"""Both stores for real: PostgreSQL replicas, SIGKILL crash safety, fail-closed outages."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import signal
import socket
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import sqlalchemy as sa

from bastion.audit import AuditUnavailable, leaf_hash, open_log, verify_inclusion

APPENDER = Path(__file__).with_name("appender.py")


def _appender(
    store: str, state: Path, tag: str, count: int, concurrency: int, wait: bool = False
) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, str(APPENDER), store, str(state), tag, str(count), str(concurrency)]
        + (["--wait"] if wait else []),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _run_together(store: str, state: Path, count: int) -> dict[int, str]:
    """Two appender processes, released at the same moment; their acknowledged indexes."""
    procs = [_appender(store, state, tag, count, 8, wait=True) for tag in ("A", "B")]
    for proc in procs:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
    for proc in procs:
        assert proc.stdin is not None
        proc.stdin.write("go\n")
        proc.stdin.flush()
    lines: list[str] = []
    for proc in procs:
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        lines += out.splitlines()
    acked = _acknowledged(lines)
    assert sorted(acked) == list(range(2 * count))
    tags = [acked[i][0] for i in range(2 * count)]
    switches = sum(a != b for a, b in itertools.pairwise(tags))
    assert switches >= 2, "the two processes did not append concurrently"
    return acked


def _acknowledged(lines: list[str]) -> dict[int, str]:
    acked: dict[int, str] = {}
    for line in lines:
        index, label = line.split()
        assert index not in acked, f"index {index} handed out twice"
        acked[int(index)] = label
    return acked


def _check_records(log_store: str, state: Path, acked: dict[int, str]) -> None:
    """Every acknowledged append is in the log, at its index, and the log verifies."""
    log = open_log(log_store, state_dir=state)
    try:
        result = log.verify()
        assert result.ok, result.messages()
        for index, label in acked.items():
            record = log.record(index)
            assert f"{record['tenant']}-{record['n']}" == label
    finally:
        log.close()


def _store(kind: str, home: Path, request: pytest.FixtureRequest) -> str:
    return str(home / "audit.sqlite3") if kind == "sqlite" else request.getfixturevalue("pg_url")


# -- PostgreSQL ------------------------------------------------------------------------


def test_postgres_log_appends_checkpoints_and_proves(home: Path, pg_url: str) -> None:
    log = open_log(pg_url, state_dir=home)

    async def run() -> list[int]:
        return await asyncio.gather(*(log.append({"tenant": "t", "n": i}) for i in range(120)))

    assert sorted(asyncio.run(run())) == list(range(120))
    cp = log.checkpoint()
    assert cp.tree_size == 120 and cp.verify(log.public_key)
    proof = log.inclusion_proof(77, 120)
    entry = json.dumps(log.record(77), sort_keys=True, separators=(",", ":")).encode()
    assert verify_inclusion(leaf_hash(entry), 77, 120, proof.path, cp.root_hash)
    assert log.consistency_proof(50, 120).verify()
    assert log.verify().ok
    log.close()


def test_two_processes_append_to_one_postgres_log(home: Path, pg_url: str) -> None:
    acked = _run_together(pg_url, home, 100)
    _check_records(pg_url, home, acked)


def test_two_processes_append_to_one_sqlite_log(home: Path) -> None:
    store = str(home / "audit.sqlite3")
    open_log(store, state_dir=home).close()  # create the key once, before both start
    acked = _run_together(store, home, 100)
    _check_records(store, home, acked)


def test_postgres_tampering_is_detected(home: Path, pg_url: str) -> None:
    log = open_log(pg_url, state_dir=home)
    for i in range(12):
        log.append_sync({"tenant": "t", "n": i, "decision": "allow"})
    log.checkpoint()
    with log._store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "UPDATE audit_leaves SET record = replace(record, 'allow', 'deny') WHERE idx = 7"
            )
        )
    result = log.verify()
    assert not result.ok and result.first_bad_index == 7
    log.close()


# -- crash safety ----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["sqlite", "postgres"])
def test_sigkill_loses_no_acknowledged_append(
    home: Path, kind: str, request: pytest.FixtureRequest
) -> None:
    store = _store(kind, home, request)
    proc = _appender(store, home, "K", 0, 8)
    assert proc.stdout is not None
    lines: list[str] = []
    while len(lines) < 400:
        line = proc.stdout.readline()
        assert line, proc.stderr.read() if proc.stderr else "appender died"
        lines.append(line)
    proc.send_signal(signal.SIGKILL)
    rest, _ = proc.communicate(timeout=30)
    lines += rest.splitlines()  # everything it printed had been acknowledged
    assert proc.returncode == -signal.SIGKILL
    acked = _acknowledged(lines)
    _check_records(store, home, acked)
    log = open_log(store, state_dir=home)  # and the log keeps working after the crash
    size = log.size()
    assert size >= len(acked)
    assert log.append_sync({"tenant": "after", "n": 0}) == size
    assert log.verify().ok
    log.close()


# -- fail closed -----------------------------------------------------------------------


class Proxy:
    """A TCP forwarder to PostgreSQL that the test can cut and restore."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._running = False
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen()
        listener.settimeout(0.05)
        self._running = True
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def _accept(self, listener: socket.socket) -> None:
        with listener:
            while self._running:
                try:
                    client, _ = listener.accept()
                except TimeoutError:
                    continue
                upstream = socket.create_connection(self.target)
                self._sockets += [client, upstream]
                for a, b in ((client, upstream), (upstream, client)):
                    threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def stop(self) -> None:
        self._running = False
        if self._thread is not None:
            self._thread.join()
        for s in self._sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()
        self._sockets.clear()


def test_postgres_outage_fails_closed_and_recovers(home: Path, pg_url: str) -> None:
    url = sa.make_url(pg_url)
    proxy = Proxy((url.host or "127.0.0.1", url.port or 5432))
    proxy.start()
    log = open_log(
        url.set(port=proxy.port).render_as_string(hide_password=False), state_dir=home, timeout_s=2
    )
    try:
        assert asyncio.run(log.append({"n": 0})) == 0
        proxy.stop()
        with pytest.raises(AuditUnavailable, match="unavailable"):
            asyncio.run(log.append({"n": 1}))
        with pytest.raises(AuditUnavailable):
            log.append_sync({"n": 1})
        proxy.start()
        assert asyncio.run(log.append({"n": 2})) == 1  # nothing half-written by the failures
        assert log.verify().ok
    finally:
        log.close()
        proxy.stop()


def test_sqlite_lock_held_elsewhere_fails_closed_and_recovers(home: Path) -> None:
    log = open_log(timeout_s=0.3)
    log.append_sync({"n": 0})
    blocker = sqlite3.connect(home / "audit.sqlite3", isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(AuditUnavailable, match="locked"):
            asyncio.run(log.append({"n": 1}))
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    assert asyncio.run(log.append({"n": 2})) == 1
    assert log.verify().ok
    log.close()


def test_unreachable_postgres_at_open_is_a_clear_error(home: Path) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    started = time.monotonic()
    with pytest.raises(AuditUnavailable, match="unavailable"):
        open_log(
            f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", state_dir=home, timeout_s=1
        )
    assert time.monotonic() - started < 30  # refused promptly, not hung
