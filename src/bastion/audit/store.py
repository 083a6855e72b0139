"""Where the log lives: SQLite (default) or PostgreSQL, through SQLAlchemy Core.

Four tables: the leaves (canonical record text and leaf hash), the cache of completed
perfect subtree hashes (what makes proofs O(log n) reads), the signed checkpoints, and a
one-row head holding the tree size, root and frontier. Every write transaction locks the
head row first (`BEGIN IMMEDIATE` on SQLite, `SELECT ... FOR UPDATE` on PostgreSQL), so
index assignment and tree state are serialized across threads, processes and replicas.
No tree state is cached in memory between transactions: a replica holds nothing of its own.
"""

from __future__ import annotations

import contextlib
import random
import sqlite3
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import sqlalchemy as sa
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from sqlalchemy import event, exc

from bastion.audit.checkpoint import SignedCheckpoint, sign_checkpoint
from bastion.audit.errors import AuditTampered, AuditUnavailable
from bastion.audit.merkle import Frontier, fold_right, leaf_hash, perfect_ranges
from bastion.audit.records import Prepared, with_seq

# SQLite: INTEGER PRIMARY KEY aliases the rowid (compact, ordered); BIGINT elsewhere.
_Index = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

metadata = sa.MetaData()
head_t = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("log_id", sa.String(36), nullable=False),
    sa.Column("size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("frontier", sa.LargeBinary, nullable=False),
    sa.Column("cp_size", sa.BigInteger, nullable=False),
    sa.Column("cp_time_ms", sa.BigInteger, nullable=False),
)
leaves_t = sa.Table(
    "audit_leaves",
    metadata,
    sa.Column("idx", _Index, primary_key=True, autoincrement=False),
    sa.Column("record", sa.Text, nullable=False),
    sa.Column("leaf_hash", sa.LargeBinary, nullable=False),
)
nodes_t = sa.Table(
    "audit_nodes",
    metadata,
    sa.Column("level", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("idx", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("hash", sa.LargeBinary, nullable=False),
)
checkpoints_t = sa.Table(
    "audit_checkpoints",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("log_id", sa.String(36), nullable=False),
    sa.Column("tree_size", sa.BigInteger, nullable=False),
    sa.Column("root", sa.LargeBinary, nullable=False),
    sa.Column("timestamp_ms", sa.BigInteger, nullable=False),
    sa.Column("key_id", sa.String(64), nullable=False),
    sa.Column("signature", sa.LargeBinary, nullable=False),
)

# Built once: SQLAlchemy then reuses their compiled form on every batch.
_SELECT_HEAD = sa.select(head_t).where(head_t.c.id == 1)
_SELECT_HEAD_FOR_UPDATE = _SELECT_HEAD.with_for_update()
_UPDATE_HEAD = head_t.update().where(head_t.c.id == 1)
_INSERT_CHECKPOINT = checkpoints_t.insert()

_INSERT_SQL: dict[tuple[str, str], str] = {}


def _insert_many(conn: sa.Connection, table: sa.Table, rows: list[tuple[Any, ...]]) -> None:
    """Insert rows (values in column order) with the driver's executemany.

    The statement is fixed and a group commit carries many rows: SQLAlchemy's per-row
    parameter processing cost more than the inserts themselves. Values are bound, never
    formatted into the SQL; the text names only our own table and columns.
    """
    style = conn.dialect.paramstyle
    sql = _INSERT_SQL.get((table.name, style))
    if sql is None:
        mark = "?" if style == "qmark" else "%s"
        names = ", ".join(c.name for c in table.columns)
        marks = ", ".join([mark] * len(table.columns))
        sql = _INSERT_SQL[(table.name, style)] = (
            f"INSERT INTO {table.name} ({names}) VALUES ({marks})"
        )
    conn.exec_driver_sql(sql, rows)


_PG_SETUP_LOCK = 0x62_61_73_74_69_6F_6E  # "bastion": serializes table creation across replicas
UNAVAILABLE_ERRORS = (
    exc.OperationalError,
    exc.InterfaceError,
    exc.DisconnectionError,
    exc.TimeoutError,
)


Durability = Literal["full", "process"]


@dataclass(frozen=True)
class Head:
    """The stored tree head: what the last committed write left."""

    log_id: str
    size: int
    root: bytes
    frontier: bytes
    cp_size: int
    cp_time_ms: int


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _redact(url: sa.URL) -> str:
    return url.render_as_string(hide_password=True)


def _sqlite_engine(path: Path, busy_timeout_s: float, durability: Durability) -> sa.Engine:
    """A SQLite engine in WAL mode with explicit BEGIN control.

    durability "full" (synchronous=FULL) fsyncs the WAL at every commit, so a record whose
    append returned survives a power loss, not only a process crash. "process"
    (synchronous=NORMAL) skips that fsync: appends still survive SIGKILL of the process
    (the WAL is in the OS page cache), a power loss can roll back the last commits but
    never corrupts the log. Group commit spreads the fsync over every record of a batch.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(
        f"sqlite:///{path}",
        connect_args={"timeout": busy_timeout_s, "check_same_thread": False},
        pool_size=4,
    )
    synchronous = "FULL" if durability == "full" else "NORMAL"

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # we issue BEGIN ourselves (see _on_begin)
        cursor = dbapi_conn.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA synchronous={synchronous}")
        cursor.execute(f"PRAGMA busy_timeout={int(busy_timeout_s * 1000)}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: sa.Connection) -> None:
        dbapi_conn = conn.connection.dbapi_connection
        if conn.get_execution_options().get("audit_write", False):
            _begin_immediate(dbapi_conn, busy_timeout_s)
        else:
            dbapi_conn.execute("BEGIN")  # type: ignore[union-attr]

    return engine


def _begin_immediate(dbapi_conn: Any, timeout_s: float) -> None:
    """Take the write lock up front (no upgrade deadlocks), polling finely for it.

    SQLite's own busy handler sleeps up to 100 ms between tries, so a process that commits
    back to back takes the lock again before a sleeping one wakes, and starves it. Polling
    every 0.1-1 ms lets several worker processes share one log file.
    """
    deadline = time.monotonic() + timeout_s
    dbapi_conn.execute("PRAGMA busy_timeout=0")
    try:
        while True:
            try:
                dbapi_conn.execute("BEGIN IMMEDIATE")
                return
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() >= deadline:
                    raise
            time.sleep(random.uniform(0.0001, 0.001))
    finally:
        dbapi_conn.execute(f"PRAGMA busy_timeout={int(timeout_s * 1000)}")


def _postgres_engine(url: sa.URL, connect_timeout_s: float, durability: Durability) -> sa.Engine:
    """A PostgreSQL engine; durability "process" turns synchronous_commit off for our sessions."""
    engine = sa.create_engine(
        url,
        pool_pre_ping=True,
        pool_size=4,
        connect_args={"connect_timeout": max(1, int(connect_timeout_s))},
    )
    if durability == "process":

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn: Any, _record: Any) -> None:
            with dbapi_conn.cursor() as cursor:
                cursor.execute("SET synchronous_commit TO off")
            dbapi_conn.commit()

    return engine


class Store:
    """One audit log in one database; safe to share between threads and processes."""

    def __init__(
        self,
        url: str | sa.URL,
        key: Ed25519PrivateKey,
        *,
        checkpoint_every: int = 4096,
        checkpoint_interval_s: float = 1.0,
        timeout_s: float = 5.0,
        durability: Durability = "full",
    ) -> None:
        self.url = sa.make_url(url)
        self.key = key
        self.checkpoint_every = checkpoint_every
        self.checkpoint_interval_ms = int(checkpoint_interval_s * 1000)
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            if not self.url.database or self.url.database == ":memory:":
                raise AuditUnavailable(
                    "the audit log needs a file, not an in-memory SQLite database"
                )
            self.engine = _sqlite_engine(Path(self.url.database), timeout_s, durability)
        elif backend == "postgresql":
            self.engine = _postgres_engine(self.url, timeout_s, durability)
        else:
            raise AuditUnavailable(
                f"unsupported audit store {backend!r}",
                fix="use a SQLite path or a postgresql+psycopg:// URL",
            )
        self.backend = backend
        self.location = _redact(self.url)
        self._setup()

    # -- transactions -------------------------------------------------------------

    @contextlib.contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except exc.IntegrityError as error:
            raise AuditUnavailable(
                f"audit store {self.location} is inconsistent: {error.orig}",
                fix="run `bastion audit verify`; the log may have been tampered with",
            ) from error
        except (*UNAVAILABLE_ERRORS, exc.DBAPIError, sqlite3.Error) as error:
            reason = str(getattr(error, "orig", error)).strip().splitlines()[0]
            raise AuditUnavailable(
                f"audit store {self.location} is unavailable: {reason}"
            ) from error

    @contextlib.contextmanager
    def write(self) -> Iterator[sa.Connection]:
        """A transaction that holds the write lock of the log until it commits."""
        with self._errors(), self.engine.connect() as conn:
            conn = conn.execution_options(audit_write=True)
            with conn.begin():
                yield conn

    @contextlib.contextmanager
    def read(self) -> Iterator[sa.Connection]:
        """A read transaction that sees one consistent snapshot of the log."""
        with self._errors(), self.engine.connect() as conn:
            if self.backend == "postgresql":
                conn = conn.execution_options(isolation_level="REPEATABLE READ")
            with conn.begin():
                yield conn

    def _setup(self) -> None:
        with self.write() as conn:
            if self.backend == "postgresql":
                conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_SETUP_LOCK})
            metadata.create_all(conn)
            if conn.execute(sa.select(head_t.c.id)).first() is None:
                conn.execute(
                    head_t.insert().values(
                        id=1,
                        log_id=str(uuid.uuid4()),
                        size=0,
                        root=Frontier().root(),
                        frontier=b"",
                        cp_size=0,
                        cp_time_ms=0,
                    )
                )

    # -- head ---------------------------------------------------------------------

    @staticmethod
    def _head(conn: sa.Connection, lock: bool) -> Head:
        postgres_lock = lock and conn.dialect.name == "postgresql"
        row = conn.execute(_SELECT_HEAD_FOR_UPDATE if postgres_lock else _SELECT_HEAD).first()
        if row is None:
            raise AuditTampered("the audit log head row is missing", first_bad_index=0)
        return Head(row.log_id, row.size, row.root, row.frontier, row.cp_size, row.cp_time_ms)

    def head(self) -> Head:
        with self.read() as conn:
            return self._head(conn, lock=False)

    # -- writes -------------------------------------------------------------------

    def _locked_frontier(self, conn: sa.Connection) -> tuple[Frontier, Head]:
        """Lock the head row and load the frontier; a damaged head stops writes (fail closed)."""
        try:
            head = self._head(conn, lock=True)
            return Frontier.from_bytes(head.size, head.frontier), head
        except (AuditTampered, ValueError) as error:
            raise AuditUnavailable(
                f"the audit log head in {self.location} is damaged: {error}",
                fix="run `bastion audit verify`; the log may have been tampered with",
            ) from error

    def append_batch(self, records: Sequence[Prepared | Mapping[str, Any]]) -> int:
        """Append prepared records in one transaction; return the index of the first."""
        with self.write() as conn:
            frontier, head = self._locked_frontier(conn)
            leaves: list[tuple[Any, ...]] = []
            nodes: list[tuple[Any, ...]] = []
            for record in records:
                index = frontier.size
                data = with_seq(record, index)
                digest = leaf_hash(data)
                leaves.append((index, data.decode(), digest))
                nodes += frontier.append(digest)
            _insert_many(conn, leaves_t, leaves)
            if nodes:
                _insert_many(conn, nodes_t, nodes)
            root = frontier.root()
            now = _now_ms()
            due = (
                frontier.size - head.cp_size >= self.checkpoint_every
                or now - head.cp_time_ms >= self.checkpoint_interval_ms
            )
            self._update_head(conn, head, frontier, root, now if due else None)
            return head.size

    def _update_head(
        self,
        conn: sa.Connection,
        head: Head,
        frontier: Frontier,
        root: bytes,
        checkpoint_ms: int | None,
    ) -> SignedCheckpoint | None:
        values: dict[str, Any] = {
            "size": frontier.size,
            "root": root,
            "frontier": frontier.to_bytes(),
        }
        signed = None
        if checkpoint_ms is not None:
            signed = sign_checkpoint(self.key, head.log_id, frontier.size, root, checkpoint_ms)
            conn.execute(
                _INSERT_CHECKPOINT,
                {
                    "log_id": signed.log_id,
                    "tree_size": signed.tree_size,
                    "root": signed.root_hash,
                    "timestamp_ms": signed.timestamp_ms,
                    "key_id": signed.key_id,
                    "signature": signed.signature,
                },
            )
            values |= {"cp_size": frontier.size, "cp_time_ms": checkpoint_ms}
        conn.execute(_UPDATE_HEAD, values)
        return signed

    def checkpoint(self) -> SignedCheckpoint:
        """Sign and store the current tree head."""
        with self.write() as conn:
            frontier, head = self._locked_frontier(conn)
            signed = self._update_head(conn, head, frontier, head.root, _now_ms())
            assert signed is not None
            return signed

    # -- reads --------------------------------------------------------------------

    @staticmethod
    def checkpoints(conn: sa.Connection) -> list[SignedCheckpoint]:
        rows = conn.execute(
            sa.select(checkpoints_t).order_by(checkpoints_t.c.tree_size, checkpoints_t.c.id)
        )
        return [
            SignedCheckpoint(r.log_id, r.tree_size, r.root, r.timestamp_ms, r.key_id, r.signature)
            for r in rows
        ]

    @staticmethod
    def leaves(
        conn: sa.Connection, start: int = 0, end: int | None = None
    ) -> Iterator[tuple[int, str, bytes]]:
        """Stored leaves in index order: (index, canonical record text, stored leaf hash)."""
        query = sa.select(leaves_t.c.idx, leaves_t.c.record, leaves_t.c.leaf_hash).where(
            leaves_t.c.idx >= start
        )
        if end is not None:
            query = query.where(leaves_t.c.idx < end)
        result = conn.execution_options(yield_per=2000).execute(query.order_by(leaves_t.c.idx))
        for row in result:
            yield row.idx, row.record, bytes(row.leaf_hash)

    @staticmethod
    def perfect_hashes(
        conn: sa.Connection, wanted: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """Stored hashes of perfect subtrees (level 0 is the leaf hash itself)."""
        wanted = set(wanted)
        found: dict[tuple[int, int], bytes] = {}
        leaves = sorted(ix for lv, ix in wanted if lv == 0)
        for chunk in _chunks(leaves, 500):
            for row in conn.execute(
                sa.select(leaves_t.c.idx, leaves_t.c.leaf_hash).where(leaves_t.c.idx.in_(chunk))
            ):
                found[(0, row.idx)] = bytes(row.leaf_hash)
        inner = sorted(p for p in wanted if p[0] > 0)
        for chunk in _chunks(inner, 500):
            query = sa.select(nodes_t).where(sa.tuple_(nodes_t.c.level, nodes_t.c.idx).in_(chunk))
            for row in conn.execute(query):
                found[(row.level, row.idx)] = bytes(row.hash)
        missing = wanted - found.keys()
        if missing:
            level, index = min(missing, key=lambda p: p[1] << p[0])
            raise AuditTampered(
                f"the audit log lost the hash of leaves [{index << level}, {(index + 1) << level})",
                first_bad_index=index << level,
            )
        return found

    @staticmethod
    def nodes_completed(conn: sa.Connection, start: int, end: int) -> dict[tuple[int, int], bytes]:
        """Stored subtree hashes (level >= 1) completed by leaves start..end-1.

        Node (level, idx) is completed by leaf ((idx + 1) << level) - 1.
        """
        clauses = []
        for level in range(1, end.bit_length() + 1):
            lo, hi = -(-(start + 1) // (1 << level)) - 1, (end >> level) - 1
            if lo <= hi:
                clauses.append(sa.and_(nodes_t.c.level == level, nodes_t.c.idx.between(lo, hi)))
        if not clauses:
            return {}
        rows = conn.execute(sa.select(nodes_t).where(sa.or_(*clauses)))
        return {(row.level, row.idx): bytes(row.hash) for row in rows}

    def range_hashes(
        self, conn: sa.Connection, ranges: Iterable[tuple[int, int]]
    ) -> dict[tuple[int, int], bytes]:
        """The tree hash of each leaf range [start, end), from the subtree cache."""
        ranges = list(ranges)
        parts = {r: perfect_ranges(*r) for r in ranges}
        stored = self.perfect_hashes(conn, {p for ps in parts.values() for p in ps})
        return {r: fold_right([stored[p] for p in ps]) for r, ps in parts.items()}

    def close(self) -> None:
        self.engine.dispose()


def _chunks(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
