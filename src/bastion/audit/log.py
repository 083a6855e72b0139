"""`AuditLog`: durable, group-committed appends to a tamper-evident Merkle log."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from bastion.audit.checkpoint import SignedCheckpoint, load_or_create_key
from bastion.audit.errors import AuditTampered, AuditUnavailable
from bastion.audit.merkle import (
    consistency_path,
    inclusion_path,
    verify_consistency,
    verify_inclusion,
)
from bastion.audit.records import Prepared, prepare
from bastion.audit.store import Durability, Store
from bastion.audit.verify import VerifyResult, verify_store
from bastion.core.errors import UsageError
from bastion.core.fs import atomic_file
from bastion.core.paths import data_dir

DEFAULT_FILE = "audit.sqlite3"


@dataclass(frozen=True)
class InclusionProof:
    """Leaf `index` (`leaf_hash`) is in the tree of `tree_size` leaves with head `root_hash`."""

    index: int
    tree_size: int
    leaf_hash: bytes
    path: list[bytes]
    root_hash: bytes

    def verify(self) -> bool:
        return verify_inclusion(
            self.leaf_hash, self.index, self.tree_size, self.path, self.root_hash
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "index": self.index,
            "tree_size": self.tree_size,
            "leaf_hash": self.leaf_hash.hex(),
            "path": [h.hex() for h in self.path],
            "root_hash": self.root_hash.hex(),
        }


@dataclass(frozen=True)
class ConsistencyProof:
    """The tree of `old_size` leaves (`old_root`) is a prefix of the `new_size` one."""

    old_size: int
    new_size: int
    old_root: bytes
    new_root: bytes
    path: list[bytes]

    def verify(self) -> bool:
        return verify_consistency(
            self.old_size, self.new_size, self.old_root, self.new_root, self.path
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "old_size": self.old_size,
            "new_size": self.new_size,
            "old_root": self.old_root.hex(),
            "new_root": self.new_root.hex(),
            "path": [h.hex() for h in self.path],
        }


class _Ranges(list[tuple[int, int]]):
    """A stand-in subtree callback that records which ranges a proof needs (fetched in one go)."""

    def __call__(self, start: int, end: int) -> bytes:
        self.append((start, end))
        return b""


class AuditLog:
    """A tamper-evident log of audit records.

    `append` queues the record; one writer task per event loop drains the queue and
    commits everything waiting in one transaction on a dedicated thread, then resolves
    every waiter. So concurrent requests share one commit (and one fsync), and each
    caller gets its leaf index only once the record is durable.
    """

    def __init__(self, store: Store, key: Ed25519PrivateKey, *, max_batch: int = 512) -> None:
        self._store = store
        self._key = key
        self.max_batch = max_batch
        self._queue: list[tuple[Prepared, asyncio.Future[int]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._writer_loop: asyncio.AbstractEventLoop | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="bastion-audit")
        self._closed = False

    @property
    def location(self) -> str:
        """Where the log lives (password hidden)."""
        return self._store.location

    @property
    def public_key(self) -> Ed25519PublicKey:
        return self._key.public_key()

    @property
    def pending(self) -> int:
        """Records queued but not yet committed (the gateway's audit lag gauge)."""
        return len(self._queue)

    # -- appends --------------------------------------------------------------------

    async def append(self, record: Mapping[str, Any]) -> int:
        """Durably append `record`; return its leaf index.

        Raises AuditUnavailable (store down: fail closed) or AuditRecordError (bad record).
        """
        self._check_open()
        prepared = prepare(record)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[int] = loop.create_future()
        self._queue.append((prepared, future))
        if self._writer is None or self._writer.done() or self._writer_loop is not loop:
            self._writer_loop = loop
            self._writer = loop.create_task(self._drain(), name="bastion-audit-writer")
        return await future

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        while self._queue:
            batch, self._queue = self._queue[: self.max_batch], self._queue[self.max_batch :]
            try:
                first = await loop.run_in_executor(
                    self._executor, self._store.append_batch, [r for r, _ in batch]
                )
            except Exception as error:
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            for offset, (_, future) in enumerate(batch):
                if not future.done():
                    future.set_result(first + offset)

    def append_sync(self, record: Mapping[str, Any]) -> int:
        """Append one record from synchronous code (CLI, admin tools); return its leaf index."""
        self._check_open()
        return self._store.append_batch([prepare(record)])

    async def flush(self) -> None:
        """Wait until every queued record is committed (or has failed)."""
        while self._writer is not None and not self._writer.done():
            await asyncio.shield(self._writer)

    # -- checkpoints, proofs, verification ------------------------------------------

    def checkpoint(self) -> SignedCheckpoint:
        """Sign the current tree head with the gateway key and store the checkpoint."""
        self._check_open()
        return self._store.checkpoint()

    def latest_checkpoint(self) -> SignedCheckpoint | None:
        with self._store.read() as conn:
            cps = self._store.checkpoints(conn)
        return max(cps, key=lambda c: (c.tree_size, c.timestamp_ms), default=None)

    def checkpoints(self) -> list[SignedCheckpoint]:
        with self._store.read() as conn:
            return self._store.checkpoints(conn)

    def size(self) -> int:
        return self._store.head().size

    def verify(self, trusted: SignedCheckpoint | None = None) -> VerifyResult:
        """Recompute every leaf and the tree; check them against every stored checkpoint.

        `trusted` is a checkpoint kept outside the store (e.g. published by an auditor):
        the log must still contain the tree it signs.
        """
        return verify_store(self._store, self.public_key, trusted)

    def _size_for(self, conn: Any, tree_size: int | None) -> int:
        current = self._store._head(conn, lock=False).size
        size = current if tree_size is None else tree_size
        if not 0 <= size <= current:
            raise UsageError(
                f"tree size {size} is not between 0 and the log size {current}",
                fix="pick a smaller size",
            )
        return size

    def inclusion_proof(self, index: int, tree_size: int | None = None) -> InclusionProof:
        """RFC 6962 audit path of leaf `index` in the tree of `tree_size` leaves (default: all)."""
        with self._store.read() as conn:
            size = self._size_for(conn, tree_size)
            if not 0 <= index < size:
                raise UsageError(
                    f"leaf {index} is not in a tree of {size} leaves",
                    fix=f"pick an index below {size}",
                )
            wanted = _Ranges()
            inclusion_path(index, size, wanted)
            hashes = self._store.range_hashes(conn, [*wanted, (index, index + 1), (0, size)])
        path = inclusion_path(index, size, lambda a, b: hashes[(a, b)])
        return InclusionProof(index, size, hashes[(index, index + 1)], path, hashes[(0, size)])

    def consistency_proof(self, old_size: int, new_size: int | None = None) -> ConsistencyProof:
        """The RFC 6962 proof that the tree of `old_size` leaves is a prefix of `new_size`."""
        with self._store.read() as conn:
            new = self._size_for(conn, new_size)
            if not 0 <= old_size <= new:
                raise UsageError(
                    f"old size {old_size} is not between 0 and {new}", fix="pass OLD <= NEW"
                )
            wanted = _Ranges()
            consistency_path(old_size, new, wanted)
            hashes = self._store.range_hashes(conn, [*wanted, (0, old_size), (0, new)])
        path = consistency_path(old_size, new, lambda a, b: hashes[(a, b)])
        return ConsistencyProof(old_size, new, hashes[(0, old_size)], hashes[(0, new)], path)

    def record(self, index: int) -> dict[str, Any]:
        """The stored record of leaf `index` (with its `seq`)."""
        with self._store.read() as conn:
            for _, text, _ in self._store.leaves(conn, index, index + 1):
                loaded: dict[str, Any] = json.loads(text)
                return loaded
        raise UsageError(
            f"leaf {index} is not in the log", fix="run `bastion audit verify` to see the log size"
        )

    def export_jsonl(self, path: str | Path) -> int:
        """Write every leaf as one JSON line {index, leaf_hash, record}; return the count."""
        count = 0
        with atomic_file(path, "w") as handle:
            for line in jsonl_lines(self):
                handle.write(line)  # type: ignore[attr-defined]
                count += 1
        return count

    def _leaves(self) -> Iterator[tuple[int, str, bytes]]:
        with self._store.read() as conn:
            yield from self._store.leaves(conn)

    # -- lifecycle -------------------------------------------------------------------

    def _check_open(self) -> None:
        if self._closed:
            raise AuditUnavailable(
                "the audit log is closed", fix="open it again with bastion.audit.open_log"
            )

    async def aclose(self) -> None:
        """Commit what is queued, then close."""
        await self.flush()
        self.close()

    def close(self) -> None:
        """Sign a final checkpoint if leaves are unsigned, then release the store."""
        if self._closed:
            return
        self._closed = True
        with contextlib.suppress(AuditUnavailable, AuditTampered):
            head = self._store.head()
            if head.size != head.cp_size:
                self._store.checkpoint()
        self._executor.shutdown(wait=True)
        self._store.close()

    def __enter__(self) -> AuditLog:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def jsonl_lines(log: AuditLog) -> Iterator[str]:
    """The export format: one line per leaf, the stored canonical record embedded verbatim."""
    for index, text, digest in log._leaves():
        yield f'{{"index":{index},"leaf_hash":"{digest.hex()}","record":{text}}}\n'


def _store_url(url_or_path: str | Path | None, state: Path) -> str:
    if url_or_path is None:
        return f"sqlite:///{state / DEFAULT_FILE}"
    text = str(url_or_path)
    if "://" in text:
        return text
    return f"sqlite:///{Path(text).expanduser().absolute()}"


def open_log(
    url_or_path: str | Path | None = None,
    *,
    signing_key: Ed25519PrivateKey | None = None,
    state_dir: Path | None = None,
    checkpoint_every: int = 4096,
    checkpoint_interval_s: float = 1.0,
    timeout_s: float = 5.0,
    durability: Durability = "full",
) -> AuditLog:
    """Open (creating if needed) the audit log.

    `url_or_path`: None for `<state_dir>/audit.sqlite3`, a SQLite file path, or a
    SQLAlchemy URL (`sqlite:///...`, `postgresql+psycopg://...`). The signing key is
    `signing_key`, else `<state_dir>/gateway-audit.key` (created 0600 if absent).
    A checkpoint is signed in the same transaction as a batch once `checkpoint_every`
    leaves or `checkpoint_interval_s` seconds have passed since the last one.
    `durability`: "full" (default) means an append that returned survives power loss
    (fsync per commit); "process" means it survives a crash of the process (SIGKILL) but
    a power loss may roll back the last commits. `timeout_s` bounds waiting for a lock or
    a connection before AuditUnavailable is raised.
    """
    state = data_dir(state_dir)
    key = signing_key if signing_key is not None else load_or_create_key(state)
    store = Store(
        _store_url(url_or_path, state),
        key,
        checkpoint_every=checkpoint_every,
        checkpoint_interval_s=checkpoint_interval_s,
        timeout_s=timeout_s,
        durability=durability,
    )
    return AuditLog(store, key)
