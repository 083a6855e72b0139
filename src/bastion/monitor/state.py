"""Detector state per client key: in memory (default) or in Redis (shared by replicas).

A state is a small dict of numpy arrays. Detectors cap their own buffers; the store caps the
number of keys it holds (least recently used dropped) and the bytes of one entry. An entry that
cannot be decoded, or is too large, reads as absent: the detector starts afresh, never crashes.
"""

from __future__ import annotations

import io
from collections import OrderedDict
from typing import Protocol

import numpy as np

from bastion.core.errors import ConfigError

State = dict[str, np.ndarray]
MAX_ENTRY_BYTES = 4 * 1024 * 1024


class StateStore(Protocol):
    """Where detector state lives between requests."""

    def load(self, name: str) -> State | None: ...

    def save(self, name: str, state: State) -> None: ...

    def delete(self, prefix: str) -> None: ...


class MemoryStore:
    """A bounded LRU of states held as live objects (one process)."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self.entries: OrderedDict[str, State] = OrderedDict()

    def load(self, name: str) -> State | None:
        state = self.entries.get(name)
        if state is not None:
            self.entries.move_to_end(name)
        return state

    def save(self, name: str, state: State) -> None:
        self.entries[name] = state
        self.entries.move_to_end(name)
        while len(self.entries) > self.max_entries:
            self.entries.popitem(last=False)

    def delete(self, prefix: str) -> None:
        for name in [n for n in self.entries if n.startswith(prefix)]:
            del self.entries[name]


def encode(state: State) -> bytes:
    """`state` as an .npz byte string (no pickled objects)."""
    buf = io.BytesIO()
    np.savez(buf, **state)  # type: ignore[arg-type]
    return buf.getvalue()


def decode(blob: bytes, max_bytes: int = MAX_ENTRY_BYTES) -> State | None:
    """The state in `blob`, or None when it is oversized or not a plain .npz of arrays."""
    if len(blob) > max_bytes:
        return None
    try:
        with np.load(io.BytesIO(blob), allow_pickle=False) as npz:
            return {k: npz[k] for k in npz.files}
    except Exception:
        return None


class RedisStore:
    """States as .npz blobs in Redis, expiring after `ttl_seconds` of inactivity."""

    def __init__(
        self, url: str, prefix: str = "bastion:detect:", ttl_seconds: int = 7 * 86400
    ) -> None:
        import redis

        self.client = redis.Redis.from_url(url, socket_connect_timeout=2, socket_timeout=2)
        self.prefix = prefix
        self.ttl = ttl_seconds

    def load(self, name: str) -> State | None:
        blob = self.client.get(self.prefix + name)
        return decode(bytes(blob)) if isinstance(blob, (bytes, bytearray)) else None

    def save(self, name: str, state: State) -> None:
        blob = encode(state)
        if len(blob) <= MAX_ENTRY_BYTES:
            self.client.set(self.prefix + name, blob, ex=self.ttl)

    def delete(self, prefix: str) -> None:
        for key in self.client.scan_iter(match=self.prefix + prefix + "*", count=500):
            self.client.delete(key)


def open_store(url: str, max_entries: int = 100_000) -> StateStore:
    """`memory://` or `redis://HOST:PORT/DB`."""
    if url == "memory://":
        return MemoryStore(max_entries)
    if url.startswith(("redis://", "rediss://")):
        return RedisStore(url)
    raise ConfigError(
        f"unsupported detector state store {url!r}", fix="use memory:// or redis://HOST:PORT"
    )


def names_in(store: StateStore, prefix: str) -> list[str]:
    """The entry names under `prefix` (memory and Redis stores)."""
    if isinstance(store, MemoryStore):
        return [n for n in store.entries if n.startswith(prefix)]
    if isinstance(store, RedisStore):
        cut = len(store.prefix)
        return [
            k.decode()[cut:]
            for k in store.client.scan_iter(match=store.prefix + prefix + "*", count=500)
        ]
    return []
