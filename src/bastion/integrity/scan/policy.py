"""Allow and deny lists: the verdict for one imported global.

The built-in lists are the versioned data file `policy.json` (JSON: parsed in C, where
TOML would cost `bastion scan` several milliseconds of start-up); users extend them per
run (`allow=`) or with their own TOML/JSON files of the same shape.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Callable, Iterable, Sequence

from bastion.core.errors import ConfigError, UsageError

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Literal

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

# Final segments of LOADERS: a dotted alias (`pkg.mod:pickle.loads`) is a loader too.
LOADER_NAMES = frozenset(q.rpartition(".")[2] for q in LOADERS)

# Names dangerous under any module: CPython resolves re-exports (`from pickle import loads`)
# and dotted paths (`pkg.mod:os.system`), so a safe module name proves nothing about them.
_DANGEROUS_NAMES = frozenset(
    {
        "load", "loads", "_loads", "Unpickler", "system", "popen", "Popen", "spawn", "spawnl",
        "spawnv", "execl", "execv", "execve", "execvp", "fork", "run", "call", "check_call",
        "check_output", "getoutput", "getstatusoutput", "eval", "exec", "compile", "open",
        "__import__", "import_module", "getattr", "setattr", "delattr", "globals", "locals",
        "vars", "breakpoint", "attrgetter", "methodcaller", "itemgetter", "reduce",
        "FunctionType", "CodeType", "MethodType", "LambdaType", "runstring", "runpy", "run_path",
        "run_module", "CDLL", "PyDLL", "LoadLibrary", "rmtree", "remove", "unlink", "fromfile",
        "memmap", "urlopen", "Process", "Thread", "Timer", "Pool", "apply", "exec_module",
        "load_module", "fdopen", "dup2", "kill", "putenv", "chmod", "Client", "Listener",
        "Connection", "Pickler", "ZipFile", "TarFile", "FileIO", "BufferedWriter",
        "TextIOWrapper", "NamedTemporaryFile", "TemporaryFile", "SpooledTemporaryFile",
        "TemporaryDirectory",
    }
)  # fmt: skip

# Module nicknames seen in `import x as y` re-exports.
_MODULE_ALIASES = {"np": "numpy", "_np": "numpy", "sp": "scipy", "pd": "pandas"}

# What a `module:*` allow wildcard covers: one undotted class name (CapWords).
_CLASS_NAME = re.compile(r"_?[A-Z][A-Za-z0-9]*\Z")

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

    def matches(
        self, module: str, name: str, *, wildcard: Callable[[str], bool] | None = None
    ) -> bool:
        """Exact entries match any name; `*` entries only names `wildcard` accepts (default all)."""
        if (module, name) in self.exact:
            return True
        covered = wildcard is None or wildcard(name)
        if covered and module in self.module_any:
            return True
        parts = module.split(".")
        for i in range(len(parts), 0, -1):
            root = ".".join(parts[:i])
            if (covered and root in self.tree_any) or name in self.tree_exact.get(root, ()):
                return True
        return False


class Policy:
    """The lists in force for one scan, and how strictly unknown imports are judged."""

    def __init__(
        self,
        name: str,
        allow: _PatternSet,
        deny: _PatternSet,
        user_allow: _PatternSet | None = None,
    ) -> None:
        self.name = name
        self.allow = allow
        self.deny = deny
        self.user_allow = _PatternSet(()) if user_allow is None else user_allow

    def judge(self, module: str, name: str) -> ImportVerdict:
        """User allows first; then denied (list, dunder, escape path, dangerous target),
        allowed, else unknown.

        A dotted name (which CPython follows attribute by attribute) is allowed only by an
        exact entry; a `module:*` wildcard covers undotted class names only.
        """
        segments = name.split(".")
        dotted = len(segments) > 1
        if self.user_allow.matches(module, name, wildcard=_never if dotted else None):
            return "allowed"
        if self.deny.matches(module, name) or self.deny.matches(module, segments[0]):
            return "denied"
        if dotted and any(_is_dunder(s) or s in _ESCAPE_SEGMENTS for s in segments):
            return "denied"
        if (module, name) not in self.allow.exact and self._dangerous_target(module, segments):
            return "denied"
        return "allowed" if self.allow.matches(module, name, wildcard=_is_class_name) else "unknown"

    def allows_exactly(self, module: str, name: str) -> bool:
        """Named by an exact built-in entry, or allowed by the user for this run."""
        return (module, name) in self.allow.exact or self.user_allow.matches(
            module, name, wildcard=_never if "." in name else None
        )

    def _dangerous_target(self, module: str, segments: list[str]) -> bool:
        """The object a (dotted) name reaches is a dangerous name or under a denied module."""
        final = segments[-1]
        if final in _DANGEROUS_NAMES:
            return True
        owners = [".".join([module, *segments[:-1]])]
        for i in range(len(segments) - 1):
            owners.append(
                ".".join([_MODULE_ALIASES.get(segments[i], segments[i]), *segments[i + 1 : -1]])
            )
        return any(self.deny.matches(owner, final) for owner in owners)


def _never(name: str) -> bool:
    return False


def _is_class_name(name: str) -> bool:
    return _CLASS_NAME.match(name) is not None


def is_loader(qual: str) -> bool:
    """`qual` (module.name) runs a pickle it is given: a LOADERS entry or a dotted alias of one."""
    return qual in LOADERS or qual.rpartition(".")[2] in LOADER_NAMES


def _is_dunder(segment: str) -> bool:
    return len(segment) > 4 and segment.startswith("__") and segment.endswith("__")


def _read_list_file(path: str) -> tuple[list[str], list[str]]:
    is_json = os.path.splitext(path)[1] == ".json"
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise ConfigError(
            f"cannot read allowlist {path}: {exc.strerror}",
            fix="pass an existing TOML or JSON file",
        ) from exc
    try:
        if is_json:
            data = json.loads(text)
        else:
            import tomllib

            data = tomllib.loads(text)
    except ValueError as exc:  # json.JSONDecodeError and tomllib.TOMLDecodeError
        raise ConfigError(
            f"allowlist {path} is not valid {'JSON' if is_json else 'TOML'}: {exc}",
            fix='use the shape of policy.json: [allow] globals = ["pkg.mod:Name"] in TOML, '
            'or {"allow": {"globals": ["pkg.mod:Name"]}} in JSON',
        ) from exc
    allow = data.get("allow", {}).get("globals", []) if isinstance(data.get("allow"), dict) else []
    deny = data.get("deny", {}).get("globals", []) if isinstance(data.get("deny"), dict) else []
    if not all(isinstance(e, str) for e in [*allow, *deny]):
        raise ConfigError(
            f"allowlist {path} has non-string entries", fix='list entries as "module:name" strings'
        )
    return list(allow), list(deny)


def load_policy(
    name: str = "default",
    *,
    allow: Sequence[str] = (),
    files: Sequence[str | os.PathLike[str]] = (),
) -> Policy:
    """The built-in lists plus per-run `allow` entries and user list files."""
    if name not in POLICIES:
        raise UsageError(f"unknown scan policy {name!r}", fix="choose default or strict")
    with open(os.path.join(os.path.dirname(__file__), "policy.json"), "rb") as handle:
        builtin = json.load(handle)
    allow_entries = list(builtin["allow"]["globals"])
    deny_entries = list(builtin["deny"]["globals"])
    for file in files:
        more_allow, more_deny = _read_list_file(os.fspath(file))
        allow_entries += more_allow
        deny_entries += more_deny
    return Policy(
        name=name,
        allow=_PatternSet(allow_entries),
        deny=_PatternSet(deny_entries),
        user_allow=_PatternSet(allow),
    )
