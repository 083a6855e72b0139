"""What every format scanner shares while scanning one top-level file."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from bastion.integrity.scan.limits import Deadline, LimitExceeded, Limits
from bastion.integrity.scan.policy import Policy
from bastion.integrity.scan.report import Effect, Level, ScanFinding

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any


class Context:
    """Policy, limits and the findings collected so far for one file (and its members)."""

    def __init__(
        self,
        policy: Policy,
        limits: Limits,
        deadline: Deadline,
        nested: Callable[[bytes, str, Context], None] | None = None,
    ) -> None:
        self.policy = policy
        self.limits = limits
        self.deadline = deadline
        # scan a byte string found inside the file as if it were a file of its own
        self.nested = nested
        self.findings: list[ScanFinding] = []
        self.depth = 0
        self.decompressed = 0
        self.members = 0
        # every imported global -> how many call sites invoke it (0: imported, never called)
        self.imports: dict[str, int] = {}
        self._seen: set[tuple[str, str | None, str]] = set()

    def add(
        self,
        rule: str,
        severity: Level,
        message: str,
        location: str = "",
        global_: str | None = None,
        effect: Effect = "suspicious",
    ) -> None:
        """Record a finding once per (rule, global, location-root)."""
        key = (rule, global_, location.split("@", 1)[0])
        if key in self._seen:
            return
        self._seen.add(key)
        self.findings.append(ScanFinding(rule, severity, message, location, global_, effect))

    def count_decompressed(self, n: int) -> None:
        self.decompressed += n
        if self.decompressed > self.limits.max_decompressed:
            raise LimitExceeded(
                "limit.decompressed",
                f"decompressed content exceeds {self.limits.max_decompressed} bytes "
                "(decompression bomb?)",
            )

    def count_member(self) -> None:
        self.members += 1
        if self.members > self.limits.max_members:
            raise LimitExceeded(
                "limit.members", f"more than {self.limits.max_members} archive members"
            )

    def deeper(self) -> Context:
        """The same context one nesting level down (archives in archives, nested pickles)."""
        if self.depth + 1 > self.limits.max_depth:
            raise LimitExceeded(
                "limit.depth", f"containers nested deeper than {self.limits.max_depth} levels"
            )
        self.depth += 1
        return self

    def shallower(self) -> None:
        self.depth -= 1


def describe(value: Any) -> str:
    """A short printable form of a value from the pickle machine."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def walk_objects(doc: Any, ctx: Context) -> Iterator[tuple[dict[str, Any], str]]:
    """Every JSON object in `doc` with its path; iterative, and checks the deadline."""
    stack: list[tuple[Any, str]] = [(doc, "")]
    visited = 0
    while stack:
        node, path = stack.pop()
        visited += 1
        if visited % 4096 == 0:
            ctx.deadline.check()
        if isinstance(node, list):
            stack.extend((v, f"{path}[{i}]") for i, v in enumerate(node))
        elif isinstance(node, dict):
            yield node, path
            stack.extend((v, f"{path}/{k}") for k, v in node.items() if isinstance(v, dict | list))
