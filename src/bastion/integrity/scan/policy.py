"""Allow and deny lists: the verdict for one imported global.

The built-in lists are the versioned data file `policy.toml`; users extend them per
run (`allow=`) or with their own TOML/JSON files of the same shape.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from bastion.core.errors import ConfigError, UsageError

ImportVerdict = Literal["allowed", "denied", "unknown"]

POLICIES = ("default", "strict")

# Loaders: callables that run a pickle (or a file holding one) passed to them as bytes.
LOADERS = frozenset(
    {
        "pickle.loads", "_pickle.loads", "pickle.load", "_pickle.load", "dill.loads",
        "cloudpickle.loads", "numpy.loads", "torch.storage._load_from_bytes", "torch.load",
        "joblib.load", "marshal.loads", "pickle._loads", "pickle.Unpickler",
    }
)  # fmt: skip

# Modules whose appearance as an attribute inside a dotted name means escape to them.
_ESCAPE_SEGMENTS = frozenset(
    {"os", "sys", "subprocess", "builtins", "__builtins__", "importlib", "posix", "nt", "system"}
)


class _PatternSet:
    """`module:name` patterns with `*` for every name and `pkg.*` for every submodule."""

    def __init__(self, entries: Iterable[str]) -> None:
        self.exact: set[tuple[str, str]] = set()
        self.module_any: set[str] = set()
        self.tree_exact: dict[str, set[str]] = {}
        self.tree_any: set[str] = set()
        for entry in entries:
            self.add(entry)

    def add(self, entry: str) -> None:
        module, sep, name = entry.strip().partition(":")
        if not sep or not module or not name:
            raise UsageError(
                f"allow/deny entry {entry!r} is not MODULE:NAME",
                fix="write e.g. mypkg.layers:MyLayer or mypkg:*",
            )
        if module.endswith(".*"):
            root = module[:-2]
            if name == "*":
                self.tree_any.add(root)
            else:
                self.tree_exact.setdefault(root, set()).add(name)
        elif name == "*":
            self.module_any.add(module)
        else:
            self.exact.add((module, name))

    def matches(self, module: str, name: str) -> bool:
        if (module, name) in self.exact or module in self.module_any:
            return True
        parts = module.split(".")
        for i in range(len(parts), 0, -1):
            root = ".".join(parts[:i])
            if root in self.tree_any or name in self.tree_exact.get(root, ()):
                return True
        return False


@dataclass
class Policy:
    """The lists in force for one scan, and how strictly unknown imports are judged."""

    name: str
    allow: _PatternSet
    deny: _PatternSet
    user_allow: _PatternSet = field(default_factory=lambda: _PatternSet(()))

    def judge(self, module: str, name: str) -> ImportVerdict:
        """User allows first; then denied (list, dunder or escape path), allowed, else unknown."""
        if self.user_allow.matches(module, name):
            return "allowed"
        segments = name.split(".")
        if self.deny.matches(module, name) or self.deny.matches(module, segments[0]):
            return "denied"
        if len(segments) > 1 and any(_is_dunder(s) or s in _ESCAPE_SEGMENTS for s in segments):
            return "denied"
        return "allowed" if self.allow.matches(module, name) else "unknown"


def _is_dunder(segment: str) -> bool:
    return len(segment) > 4 and segment.startswith("__") and segment.endswith("__")


def _read_list_file(path: Path) -> tuple[list[str], list[str]]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(
            f"cannot read allowlist {path}: {exc.strerror}",
            fix="pass an existing TOML or JSON file",
        ) from exc
    try:
        data = json.loads(text) if path.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(
            f"allowlist {path} is not valid {'JSON' if path.suffix == '.json' else 'TOML'}: {exc}",
            fix='use the shape of policy.toml: [allow] globals = ["pkg.mod:Name"]',
        ) from exc
    allow = data.get("allow", {}).get("globals", []) if isinstance(data.get("allow"), dict) else []
    deny = data.get("deny", {}).get("globals", []) if isinstance(data.get("deny"), dict) else []
    if not all(isinstance(e, str) for e in [*allow, *deny]):
        raise ConfigError(
            f"allowlist {path} has non-string entries", fix='list entries as "module:name" strings'
        )
    return list(allow), list(deny)


def load_policy(
    name: str = "default", *, allow: Sequence[str] = (), files: Sequence[str | Path] = ()
) -> Policy:
    """The built-in lists plus per-run `allow` entries and user list files."""
    if name not in POLICIES:
        raise UsageError(f"unknown scan policy {name!r}", fix="choose default or strict")
    builtin = tomllib.loads((Path(__file__).parent / "policy.toml").read_text("utf-8"))
    allow_entries = list(builtin["allow"]["globals"])
    deny_entries = list(builtin["deny"]["globals"])
    for file in files:
        more_allow, more_deny = _read_list_file(Path(file))
        allow_entries += more_allow
        deny_entries += more_deny
    return Policy(
        name=name,
        allow=_PatternSet(allow_entries),
        deny=_PatternSet(deny_entries),
        user_allow=_PatternSet(allow),
    )
