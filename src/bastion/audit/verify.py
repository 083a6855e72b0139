"""Recompute the whole log from its stored records and check it against signed checkpoints."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from bastion.audit.checkpoint import SignedCheckpoint
from bastion.audit.errors import AuditTampered
from bastion.audit.merkle import Frontier, leaf_hash
from bastion.audit.records import SEQ_FIELD, canonical_json
from bastion.audit.store import Store

MAX_PROBLEMS = 20
NODE_CHUNK = 4096  # leaves per comparison of the subtree-hash cache


@dataclass
class VerifyResult:
    """What `verify()` found. `ok` is False as soon as one problem is listed."""

    tree_size: int
    root_hash: bytes
    latest_checkpoint: SignedCheckpoint | None
    checkpoints_checked: int
    unsigned_leaves: int
    problems: list[tuple[int | None, str]] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def first_bad_index(self) -> int | None:
        """The smallest leaf index a problem points at (None when no problem names one)."""
        indexes = [i for i, _ in self.problems if i is not None]
        return min(indexes) if indexes else None

    def messages(self) -> list[str]:
        """Problems, the one at the smallest index first."""
        ordered = sorted(self.problems, key=lambda p: (p[0] is None, p[0] or 0))
        return [message for _, message in ordered]

    def raise_if_bad(self) -> None:
        if self.problems:
            raise AuditTampered(self.messages()[0], first_bad_index=self.first_bad_index)


class _Problems(list[tuple[int | None, str]]):
    def add(self, index: int | None, message: str) -> None:
        if len(self) < MAX_PROBLEMS:
            self.append((index, message))

    def located(self) -> bool:
        """True once a problem points at a leaf."""
        return any(index is not None for index, _ in self)


def _check_leaf(index: int, text: str, stored: bytes, problems: _Problems) -> bytes:
    """The recomputed leaf hash of stored row `index`, noting what is wrong with the row."""
    data = text.encode()
    digest = leaf_hash(data)
    try:
        record = json.loads(data)
        canonical = isinstance(record, dict) and canonical_json(record) == data
    except ValueError:
        record, canonical = None, False
    if not canonical:
        problems.add(index, f"leaf {index}: the stored record is not canonical JSON (edited)")
    elif record.get(SEQ_FIELD) != index:
        problems.add(
            index,
            f"leaf {index}: the record says it is leaf {record.get(SEQ_FIELD)} "
            "(rows reordered, inserted or deleted)",
        )
    if digest != stored:
        problems.add(index, f"leaf {index}: the record does not match its stored hash (edited)")
    return digest


def verify_store(
    store: Store, public_key: Ed25519PublicKey, trusted: SignedCheckpoint | None = None
) -> VerifyResult:
    """Check every leaf, the tree head, and every checkpoint (plus `trusted`, kept elsewhere)."""
    problems = _Problems()
    with store.read() as conn:
        try:
            head = store._head(conn, lock=False)
        except AuditTampered as error:
            problems.add(0, error.message)
            return VerifyResult(0, Frontier().root(), None, 0, 0, list(problems))
        stored_cps = store.checkpoints(conn)
        candidates = [*stored_cps, *([trusted] if trusted else [])]
        valid: dict[int, list[SignedCheckpoint]] = {}
        for cp in candidates:
            if cp.log_id != head.log_id:
                problems.add(
                    None, f"checkpoint at size {cp.tree_size} belongs to another log ({cp.log_id})"
                )
            elif not cp.verify(public_key):
                problems.add(None, f"checkpoint at size {cp.tree_size} has an invalid signature")
            else:
                valid.setdefault(cp.tree_size, []).append(cp)
        sizes = sorted(valid)
        frontier = Frontier()
        last_good = 0
        expected = 0

        def check_checkpoints() -> None:
            """Compare the recomputed root with checkpoints at this size.

            Only the first mismatch is reported, and only when no leaf-level problem
            already explains it: every later root inherits the same damage.
            """
            nonlocal last_good
            if frontier.size not in valid:
                return
            root = frontier.root()
            if all(cp.root_hash == root for cp in valid[frontier.size]):
                last_good = frontier.size
            elif not problems.located():
                problems.add(
                    last_good,
                    f"leaves {last_good}..{frontier.size - 1} do not match the checkpoint "
                    f"signed at size {frontier.size}: a record in that range was altered, "
                    "inserted, removed or reordered",
                )

        computed: dict[tuple[int, int], bytes] = {}
        chunk_start = 0

        def check_node_cache() -> None:
            """The cached subtree hashes (what proofs are built from) must match the leaves.

            Reported only when no leaf problem explains the difference, and at no leaf
            index: a damaged cache breaks proofs, not the records.
            """
            nonlocal chunk_start
            stored = store.nodes_completed(conn, chunk_start, frontier.size)
            if stored != computed and not problems.located():
                (level, idx), _ = min(
                    (stored.items() ^ computed.items()), key=lambda item: item[0][1] << item[0][0]
                )
                problems.add(
                    None,
                    f"the cached hash of leaves {idx << level}..{((idx + 1) << level) - 1} is "
                    "wrong: inclusion and consistency proofs over them would not verify",
                )
            computed.clear()
            chunk_start = frontier.size

        check_checkpoints()
        for index, text, stored in store.leaves(conn):
            if index != expected:
                problems.add(
                    expected, f"leaf {expected} is missing (the next stored leaf is {index})"
                )
            expected = index + 1
            for level, idx, digest in frontier.append(_check_leaf(index, text, stored, problems)):
                computed[(level, idx)] = digest
            check_checkpoints()
            if frontier.size - chunk_start >= NODE_CHUNK:
                check_node_cache()
        check_node_cache()

    size = frontier.size
    if size < head.size:
        problems.add(
            size,
            f"leaf {size} is missing: the log holds {size} leaves but its head says {head.size}",
        )
    elif size > head.size:
        problems.add(
            head.size,
            f"leaf {head.size} is not in the tree: the log holds {size} leaves "
            f"but its head says {head.size}",
        )
    if sizes and size < sizes[-1]:
        problems.add(
            size,
            f"leaf {size} is missing: the log was truncated (a checkpoint signs {sizes[-1]} "
            f"leaves, the log holds {size})",
        )
    if size and not sizes:
        problems.add(
            0, f"the log holds {size} leaves but no valid signed checkpoint (checkpoints deleted?)"
        )
    if not problems.located() and (
        frontier.root() != head.root or frontier.to_bytes() != head.frontier
    ):
        problems.add(
            last_good, f"the stored tree head does not match leaves {last_good}..{size - 1}"
        )
    latest = max(
        (cp for cps in valid.values() for cp in cps),
        key=lambda c: (c.tree_size, c.timestamp_ms),
        default=None,
    )
    return VerifyResult(
        tree_size=size,
        root_hash=frontier.root(),
        latest_checkpoint=latest,
        checkpoints_checked=sum(len(v) for v in valid.values()),
        unsigned_leaves=size - (sizes[-1] if sizes else 0),
        problems=list(problems),
    )
