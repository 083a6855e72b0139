"""Resource limits that keep a hostile file from exhausting memory or time."""

from __future__ import annotations

import time


class Limits:
    """Ceilings per scanned file; exceeding one is a finding, never a crash or a hang."""

    def __init__(
        self,
        *,
        max_seconds: float = 300.0,
        max_decompressed: int = 8 << 30,
        max_depth: int = 6,
        max_members: int = 100_000,
        max_memo: int = 2_000_000,
        max_stack: int = 2_000_000,
        max_marks: int = 200_000,
        max_streams: int = 256,
        max_nested_pickle: int = 256 << 20,
    ) -> None:
        self.max_seconds = max_seconds
        self.max_decompressed = max_decompressed
        self.max_depth = max_depth
        self.max_members = max_members
        self.max_memo = max_memo
        self.max_stack = max_stack
        self.max_marks = max_marks
        self.max_streams = max_streams
        self.max_nested_pickle = max_nested_pickle


class LimitExceeded(Exception):
    """Raised inside a scanner; the engine turns it into a `limit.*` finding."""

    def __init__(self, rule: str, message: str) -> None:
        super().__init__(message)
        self.rule = rule
        self.message = message


class Deadline:
    """Wall-clock budget for one top-level file."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def check(self) -> None:
        if time.monotonic() > self.end:
            raise LimitExceeded(
                "limit.time",
                f"scan took longer than {self.seconds:g} s; the rest of the file was not scanned",
            )
