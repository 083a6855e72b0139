"""An abstract pickle machine: follows the stack and memo exactly as CPython's unpickler.

It never builds the objects a pickle describes. It tracks only what decides safety:
which stack slots hold strings (operands of STACK_GLOBAL), which hold imported globals,
and which hold the results of calls. Every import is judged by the policy and every
call site recorded. Long runs of plain numbers are skipped with one regular-expression
match, so a large pickle of numeric lists is read at C speed.
"""

from __future__ import annotations

import _compat_pickle
import binascii
import codecs
import re
import struct

from bastion.integrity.scan.context import Context, describe
from bastion.integrity.scan.limits import LimitExceeded
from bastion.integrity.scan.policy import is_loader

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_U1 = struct.Struct("<B").unpack_from
_U2 = struct.Struct("<H").unpack_from
_I4 = struct.Struct("<i").unpack_from
_U4 = struct.Struct("<I").unpack_from
_U8 = struct.Struct("<Q").unpack_from

STR_CAP = 1 << 20  # strings longer than this are tracked by position, not content
TORCH_LEGACY_MAGIC = 0x1950A86A20F9469CFC6C

# Runs of opcodes that only push plain scalars: BININT1, BININT2, BININT, BINFLOAT, NONE,
# NEWTRUE, NEWFALSE. Matched in C; the count of opcodes comes from a second C pass.
_BULK = re.compile(rb"(?:J....|G.{8}|K.|M..|N|\x88|\x89){24,}+", re.DOTALL)
_ONE = re.compile(rb"K.|M..|J....|G.{8}|N|\x88|\x89", re.DOTALL)
_BULK_FIRST = frozenset(b"KMJGN\x88\x89")

JOBLIB_WRAPPERS = frozenset(
    {
        "joblib.numpy_pickle.NumpyArrayWrapper",
        "sklearn.externals.joblib.numpy_pickle.NumpyArrayWrapper",
    }
)


class ParseError(Exception):
    """The stream is malformed at `pos`; CPython's unpickler would stop there too."""

    def __init__(self, message: str, pos: int) -> None:
        super().__init__(message)
        self.pos = pos


class _Scalar:
    __slots__ = ()

    def __repr__(self) -> str:
        return "<scalar>"


SCALAR = _Scalar()


class Global:
    """An imported global, never resolved: module, name and the policy's verdict."""

    __slots__ = ("module", "name", "verdict")

    def __init__(self, module: str, name: str, verdict: str) -> None:
        self.module, self.name, self.verdict = module, name, verdict

    @property
    def qual(self) -> str:
        return f"{self.module}.{self.name}"

    def __repr__(self) -> str:
        return self.qual


class Obj:
    """The result of a call site (REDUCE, NEWOBJ, INST, OBJ) or of persistent_load."""

    __slots__ = ("args", "callee", "how", "state")

    def __init__(self, callee: Any, how: str, args: Any = None) -> None:
        self.callee, self.how, self.args, self.state = callee, how, args, None

    def __repr__(self) -> str:
        return f"{describe(self.callee)}(...)"


class Big:
    """A string or bytes constant too long to keep: its kind and place in the data."""

    __slots__ = ("kind", "length", "start")

    def __init__(self, kind: type, start: int, length: int) -> None:
        self.kind, self.start, self.length = kind, start, length


class Run:
    """At least 24 plain scalars pushed by data[start:end], counted only if ever needed."""

    __slots__ = ("end", "start")

    def __init__(self, start: int, end: int) -> None:
        self.start, self.end = start, end

    def __repr__(self) -> str:
        return "<scalars>"


class ListV:
    __slots__ = ()


class SetV:
    __slots__ = ()


class DictV:
    """A dict; keeps up to 64 entries with plain keys (enough for joblib array headers)."""

    __slots__ = ("items",)

    def __init__(self) -> None:
        self.items: dict[Any, Any] = {}

    def set(self, key: Any, value: Any) -> None:
        if len(self.items) < 64 and isinstance(key, str | int):
            self.items[key] = value


_MUTABLE = (ListV, DictV, SetV)


def _tuple(items: list[Any]) -> tuple[Any, ...]:
    return tuple(items) if len(items) <= 64 else tuple(items[:64])


class PickleMachine:
    """Runs one or more pickle streams over `data[start:end]`, recording into `ctx`."""

    def __init__(self, data: Any, start: int, end: int, ctx: Context, where: str) -> None:
        self.data = data
        self.pos = start
        self.end = end
        self.ctx = ctx
        self.where = where
        self.proto = 0
        self.imports = 0
        self.calls = 0
        self.release: Any = None  # callable(pos) to drop pages already read (mmap)

    # ---- helpers -------------------------------------------------------------------
    def _need(self, p: int, n: int) -> None:
        if p + n > self.end:
            raise ParseError("pickle data was truncated", p)

    def _line(self, p: int) -> tuple[bytes, int]:
        nl = self.data.find(b"\n", p, self.end)
        if nl < 0:
            raise ParseError("pickle data was truncated (no end of line)", p)
        return bytes(self.data[p:nl]), nl + 1

    def _const(self, kind: type, p: int, n: int) -> Any:
        self._need(p, n)
        if n > STR_CAP:
            return Big(kind, p, n)
        raw = bytes(self.data[p : p + n])
        if kind is bytes:
            return raw
        try:
            return raw.decode("utf-8", "surrogatepass")
        except UnicodeDecodeError:
            raise ParseError("invalid UTF-8 in a string opcode", p) from None

    def _loc(self, p: int) -> str:
        return f"{self.where}@{p}"

    def _global(self, module: str, name: str, p: int, how: str) -> Global:
        if self.proto < 3:
            if (module, name) in _compat_pickle.NAME_MAPPING:
                module, name = _compat_pickle.NAME_MAPPING[(module, name)]
            elif module in _compat_pickle.IMPORT_MAPPING:
                module = _compat_pickle.IMPORT_MAPPING[module]
        if not all(part.isidentifier() for part in module.split(".")):
            # the import fails before anything runs (raw tensor bytes often look like this)
            raise ParseError(f"{module!r} is not an importable module name", p)
        verdict = self.ctx.policy.judge(module, name)
        self.imports += 1
        g = Global(module, name, verdict)
        self.ctx.imports.setdefault(g.qual, 0)
        if verdict == "denied":
            self.ctx.add(
                "pickle.import.denied",
                "critical",
                f"imports {g.qual} ({how}), a known-dangerous callable",
                self._loc(p),
                g.qual,
                "malicious",
            )
        elif verdict == "unknown":
            strict = self.ctx.policy.name == "strict"
            self.ctx.add(
                "pickle.import.unknown",
                "high" if strict else "medium",
                f"imports {g.qual} ({how}), which is not on the allowlist",
                self._loc(p),
                g.qual,
                "malicious" if strict else "suspicious",
            )
        return g

    def _call(self, callee: Any, how: str, args: Any, p: int) -> Obj:
        self.calls += 1
        if not isinstance(callee, Global):
            self.ctx.add(
                "pickle.call.indirect",
                "critical",
                f"{how} calls {describe(callee)}, a value that is not an imported global",
                self._loc(p),
                None,
                "malicious",
            )
        else:
            self.ctx.imports[callee.qual] = self.ctx.imports.get(callee.qual, 0) + 1
            if is_loader(callee.qual):
                self._nested_loader(callee, args, p)
        return Obj(callee, how, args)

    def _nested_loader(self, callee: Global, args: Any, p: int) -> None:
        first = args[0] if isinstance(args, tuple) and args else None
        payload = self._payload(first)
        if payload is None:
            self.ctx.add(
                "pickle.loader.opaque",
                "critical",
                f"{callee.qual} is called on a value the scanner cannot resolve",
                self._loc(p),
                callee.qual,
                "malicious",
            )
            return
        if self.ctx.nested is not None:
            self.ctx.nested(payload, f"{self.where}@{p}:{callee.qual}", self.ctx)

    def _payload(self, value: Any) -> bytes | None:
        """The bytes a loader would receive: raw, latin-1 folded, base64 or hex text."""
        if isinstance(value, Big):
            if value.length > self.ctx.limits.max_nested_pickle:
                return None
            raw = bytes(self.data[value.start : value.start + value.length])
            value = raw if value.kind is bytes else raw.decode("utf-8", "surrogatepass")
        if (
            isinstance(value, Obj)
            and isinstance(value.callee, Global)
            and value.callee.qual == "_codecs.encode"
        ):
            value = _fold_codecs(value.args)
        if isinstance(value, bytes):
            return value
        if isinstance(value, str):
            import base64

            stripped = value.strip()
            for decode in (lambda s: base64.b64decode(s, validate=True), bytes.fromhex):
                try:
                    out = decode(stripped)
                except (ValueError, binascii.Error):
                    continue
                if out[:1] in (b"\x80", b"c", b"(", b"]", b"}", b"P") or out[:2] == b"PK":
                    return out
            return value.encode("latin-1", "replace")
        return None

    def _check(self, stack: list[Any], memo: dict[int, Any], meta: list[Any], p: int) -> None:
        lim = self.ctx.limits
        if len(stack) > lim.max_stack:
            raise LimitExceeded(
                "limit.stack", f"pickle stack grew beyond {lim.max_stack} items at offset {p}"
            )
        if len(memo) > lim.max_memo:
            raise LimitExceeded(
                "limit.memo", f"pickle memo grew beyond {lim.max_memo} entries at offset {p}"
            )
        if len(meta) > lim.max_marks:
            raise LimitExceeded(
                "limit.nesting", f"pickle marks nested deeper than {lim.max_marks} at offset {p}"
            )
        self.ctx.deadline.check()
        if self.release is not None:
            self.release(p)

    # ---- one stream ----------------------------------------------------------------
    def run_stream(self) -> Any:
        """Execute one stream from `self.pos` to its STOP; returns the value STOP pops."""
        data, end = self.data, self.end
        p = self.pos
        self.proto = 0  # each load() starts with a fresh unpickler
        stack: list[Any] = []
        meta: list[list[Any]] = []
        memo: dict[int, Any] = {}
        push = stack.append
        budget = 65536
        bulk_match = _BULK.match
        view = memoryview(data)
        max_stack = self.ctx.limits.max_stack
        one_subn = _ONE.subn

        def pop_mark(at: int) -> list[Any]:
            nonlocal stack, push
            if not meta:
                raise ParseError("could not find MARK", at)
            items = stack
            stack = meta.pop()
            push = stack.append
            return items

        def expand() -> None:
            # a run of scalars is counted only when an opcode reaches into it
            run = stack.pop()
            stack.extend([SCALAR] * one_subn(b"", view[run.start : run.end])[1])

        def pop(at: int) -> Any:
            if not stack:
                raise ParseError("unpickling stack underflow", at)
            if stack[-1].__class__ is Run:
                expand()
            return stack.pop()

        def top(at: int) -> Any:
            if not stack:
                raise ParseError("unpickling stack underflow", at)
            if stack[-1].__class__ is Run:
                expand()
            return stack[-1]

        try:
            while True:
                budget -= 1
                if budget == 0:
                    budget = 65536
                    self._check(stack, memo, meta, p)
                if p >= end:
                    raise ParseError("pickle data was truncated (no STOP)", p)
                op = data[p]
                at = p
                p += 1
                if op in _BULK_FIRST:
                    m = bulk_match(data, at, end)
                    if m is not None:
                        p = m.end()
                        push(Run(at, p))
                        if p - at > max_stack:
                            expand()
                            self._check(stack, memo, meta, p)
                        continue
                    if op == 0x4B:  # BININT1
                        self._need(p, 1)
                        push(data[p])
                        p += 1
                    elif op == 0x4D:  # BININT2
                        self._need(p, 2)
                        push(_U2(data, p)[0])
                        p += 2
                    elif op == 0x4A:  # BININT
                        self._need(p, 4)
                        push(_I4(data, p)[0])
                        p += 4
                    elif op == 0x47:  # BINFLOAT
                        self._need(p, 8)
                        push(SCALAR)
                        p += 8
                    else:  # NONE, NEWTRUE, NEWFALSE
                        push(SCALAR)
                elif op == 0x71:  # BINPUT
                    self._need(p, 1)
                    memo[data[p]] = top(at)
                    p += 1
                elif op == 0x94:  # MEMOIZE
                    memo[len(memo)] = top(at)
                elif op == 0x68:  # BINGET
                    self._need(p, 1)
                    push(self._memo_get(memo, data[p], at))
                    p += 1
                elif op == 0x72:  # LONG_BINPUT
                    self._need(p, 4)
                    memo[_U4(data, p)[0]] = top(at)
                    p += 4
                elif op == 0x6A:  # LONG_BINGET
                    self._need(p, 4)
                    push(self._memo_get(memo, _U4(data, p)[0], at))
                    p += 4
                elif op == 0x28:  # MARK
                    meta.append(stack)
                    stack = []
                    push = stack.append
                elif op == 0x8C:  # SHORT_BINUNICODE
                    self._need(p, 1)
                    n = data[p]
                    push(self._const(str, p + 1, n))
                    p += 1 + n
                elif op == 0x58:  # BINUNICODE
                    self._need(p, 4)
                    n = _U4(data, p)[0]
                    push(self._const(str, p + 4, n))
                    p += 4 + n
                elif op == 0x86:  # TUPLE2
                    b = pop(at)
                    a = pop(at)
                    push((a, b))
                elif op == 0x74:  # TUPLE
                    items = pop_mark(at)
                    push(_tuple(items))
                elif op == 0x52:  # REDUCE
                    args = pop(at)
                    func = top(at)
                    stack[-1] = self._call(func, "REDUCE", args, at)
                elif op == 0x85:  # TUPLE1
                    push((pop(at),))
                elif op == 0x87:  # TUPLE3
                    c3 = pop(at)
                    b = pop(at)
                    a = pop(at)
                    push((a, b, c3))
                elif op == 0x51:  # BINPERSID
                    push(self._persistent(pop(at), at))
                elif op == 0x7D:  # EMPTY_DICT
                    push(DictV())
                elif op == 0x5D:  # EMPTY_LIST
                    push(ListV())
                elif op == 0x29:  # EMPTY_TUPLE
                    push(())
                elif op == 0x75:  # SETITEMS
                    items = pop_mark(at)
                    self._into(top(at), "__setitem__", items, at)
                elif op == 0x65:  # APPENDS
                    items = pop_mark(at)
                    self._into(top(at), "extend", items, at)
                elif op == 0x61:  # APPEND
                    value = pop(at)
                    self._into(top(at), "append", [value], at)
                elif op == 0x73:  # SETITEM
                    value = pop(at)
                    key = pop(at)
                    self._into(top(at), "__setitem__", [key, value], at)
                elif op == 0x93:  # STACK_GLOBAL
                    name = pop(at)
                    module = pop(at)
                    if isinstance(name, str) and isinstance(module, str):
                        push(self._global(module, name, at, "STACK_GLOBAL"))
                    elif isinstance(name, Big | Obj) or isinstance(module, Big | Obj):
                        self.ctx.add(
                            "pickle.global.unresolved",
                            "critical",
                            f"STACK_GLOBAL operands {describe(module)}, {describe(name)} "
                            "cannot be resolved statically",
                            self._loc(at),
                            None,
                            "malicious",
                        )
                        push(Obj(None, "STACK_GLOBAL"))
                    else:
                        raise ParseError("STACK_GLOBAL requires str", at)
                elif op == 0x63:  # GLOBAL
                    mline, p = self._line(p)
                    nline, p = self._line(p)
                    try:
                        push(
                            self._global(mline.decode("utf-8"), nline.decode("utf-8"), at, "GLOBAL")
                        )
                    except UnicodeDecodeError:
                        raise ParseError("GLOBAL names are not UTF-8", at) from None
                elif op == 0x62:  # BUILD
                    state = pop(at)
                    p = self._build(top(at), state, at, p)
                    if isinstance(stack[-1], Obj) and stack[-1].how == "joblib-array":
                        stack[-1] = SCALAR
                elif op == 0x81:  # NEWOBJ
                    args = pop(at)
                    cls = pop(at)
                    push(self._call(cls, "NEWOBJ", args, at))
                elif op == 0x8D:  # BINUNICODE8
                    self._need(p, 8)
                    n = _U8(data, p)[0]
                    push(self._const(str, p + 8, n))
                    p += 8 + n
                elif op == 0x43:  # SHORT_BINBYTES
                    self._need(p, 1)
                    n = data[p]
                    push(self._const(bytes, p + 1, n))
                    p += 1 + n
                elif op == 0x42:  # BINBYTES
                    self._need(p, 4)
                    n = _U4(data, p)[0]
                    push(self._const(bytes, p + 4, n))
                    p += 4 + n
                elif op in (0x8E, 0x96):  # BINBYTES8, BYTEARRAY8
                    self._need(p, 8)
                    n = _U8(data, p)[0]
                    push(self._const(bytes, p + 8, n) if op == 0x8E else ListV())
                    self._need(p + 8, n)
                    p += 8 + n
                elif op == 0x55:  # SHORT_BINSTRING
                    self._need(p, 1)
                    n = data[p]
                    self._need(p + 1, n)
                    push(bytes(data[p + 1 : p + 1 + n]).decode("latin-1"))
                    p += 1 + n
                elif op == 0x54:  # BINSTRING
                    self._need(p, 4)
                    n = _I4(data, p)[0]
                    if n < 0:
                        raise ParseError("BINSTRING pickle has negative byte count", at)
                    c = self._const(bytes, p + 4, n)
                    push(
                        c.decode("latin-1") if isinstance(c, bytes) else Big(str, c.start, c.length)
                    )
                    p += 4 + n
                elif op == 0x53:  # STRING (protocol 0, quoted repr)
                    line, p = self._line(p)
                    if len(line) < 2 or line[0] != line[-1] or line[0] not in b"\"'":
                        raise ParseError("the STRING opcode argument must be quoted", at)
                    try:
                        push(codecs.escape_decode(line[1:-1])[0].decode("latin-1"))
                    except ValueError:
                        raise ParseError("bad escape in STRING opcode", at) from None
                elif op == 0x56:  # UNICODE (protocol 0)
                    line, p = self._line(p)
                    try:
                        push(line.decode("raw-unicode-escape"))
                    except UnicodeDecodeError:
                        raise ParseError("bad escape in UNICODE opcode", at) from None
                elif op == 0x69:  # INST
                    mline, p = self._line(p)
                    nline, p = self._line(p)
                    try:
                        cls = self._global(mline.decode("ascii"), nline.decode("ascii"), at, "INST")
                    except UnicodeDecodeError:
                        raise ParseError("INST names are not ASCII", at) from None
                    args = pop_mark(at)
                    push(self._call(cls, "INST", _tuple(args), at))
                elif op == 0x6F:  # OBJ
                    args = pop_mark(at)
                    if not args:
                        raise ParseError("OBJ without a class", at)
                    push(self._call(args[0], "OBJ", _tuple(args[1:]), at))
                elif op == 0x92:  # NEWOBJ_EX
                    pop(at)
                    args = pop(at)
                    cls = pop(at)
                    push(self._call(cls, "NEWOBJ_EX", args, at))
                elif op in (0x82, 0x83, 0x84):  # EXT1, EXT2, EXT4
                    size = {0x82: 1, 0x83: 2, 0x84: 4}[op]
                    self._need(p, size)
                    code = int.from_bytes(data[p : p + size], "little")
                    p += size
                    self.ctx.add(
                        "pickle.extension",
                        "critical",
                        f"extension code {code} names a global only the loading process knows",
                        self._loc(at),
                        f"ext:{code}",
                        "malicious",
                    )
                    push(Obj(None, "EXT"))
                elif op == 0x90:  # ADDITEMS
                    items = pop_mark(at)
                    self._into(top(at), "add", items, at)
                elif op == 0x8F:  # EMPTY_SET
                    push(SetV())
                elif op == 0x91:  # FROZENSET
                    pop_mark(at)
                    push(SCALAR)
                elif op == 0x6C:  # LIST
                    pop_mark(at)
                    push(ListV())
                elif op == 0x64:  # DICT
                    items = pop_mark(at)
                    d = DictV()
                    for i in range(0, len(items) - 1, 2):
                        d.set(items[i], items[i + 1])
                    push(d)
                elif op == 0x67:  # GET
                    line, p = self._line(p)
                    push(self._memo_get(memo, _int(line, at), at))
                elif op == 0x70:  # PUT
                    line, p = self._line(p)
                    idx = _int(line, at)
                    if idx < 0:
                        raise ParseError("negative PUT argument", at)
                    memo[idx] = top(at)
                elif op == 0x30:  # POP
                    if stack:
                        pop(at)
                    else:
                        pop_mark(at)
                elif op == 0x31:  # POP_MARK
                    pop_mark(at)
                elif op == 0x32:  # DUP
                    push(top(at))
                elif op == 0x80:  # PROTO
                    self._need(p, 1)
                    proto = data[p]
                    if proto > 5:
                        raise ParseError(f"unsupported pickle protocol: {proto}", at)
                    self.proto = proto
                    p += 1
                elif op == 0x95:  # FRAME
                    self._need(p, 8)
                    p += 8
                elif op == 0x8A:  # LONG1
                    self._need(p, 1)
                    n = data[p]
                    self._need(p + 1, n)
                    push(
                        int.from_bytes(data[p + 1 : p + 1 + n], "little", signed=True)
                        if n <= 16
                        else SCALAR
                    )
                    p += 1 + n
                elif op == 0x8B:  # LONG4
                    self._need(p, 4)
                    n = _I4(data, p)[0]
                    if n < 0:
                        raise ParseError("LONG pickle has negative byte count", at)
                    self._need(p + 4, n)
                    push(SCALAR)
                    p += 4 + n
                elif op == 0x49:  # INT
                    line, p = self._line(p)
                    push(SCALAR if line in (b"00", b"01") else _int(line, at, base=0))
                elif op == 0x4C:  # LONG
                    line, p = self._line(p)
                    _int(line[:-1] if line.endswith(b"L") else line, at, base=0)
                    push(SCALAR)
                elif op == 0x46:  # FLOAT
                    line, p = self._line(p)
                    try:
                        float(line)
                    except ValueError:
                        raise ParseError("could not convert FLOAT argument", at) from None
                    push(SCALAR)
                elif op == 0x50:  # PERSID
                    line, p = self._line(p)
                    push(self._persistent(line.decode("latin-1"), at))
                elif op == 0x97:  # NEXT_BUFFER
                    raise ParseError(
                        "pickle refers to out-of-band buffers the loader does not supply", at
                    )
                elif op == 0x98:  # READONLY_BUFFER
                    top(at)
                elif op == 0x2E:  # STOP
                    self.pos = p
                    return pop(at)
                else:
                    raise ParseError(f"invalid load key {bytes([op])!r}", at)
        except ParseError:
            raise
        except (IndexError, struct.error) as exc:
            raise ParseError(f"malformed pickle: {exc}", p) from None
        finally:
            view.release()  # an exported buffer would keep the file mapping from closing

    # ---- semantics of the mutating opcodes ------------------------------------------------
    def _memo_get(self, memo: dict[int, Any], idx: int, at: int) -> Any:
        try:
            return memo[idx]
        except KeyError:
            raise ParseError(f"memo value {idx} not found", at) from None

    def _into(self, target: Any, method: str, items: list[Any], at: int) -> None:
        """APPEND(S), SETITEM(S), ADDITEMS: plain containers are fine; anything else is a call."""
        if isinstance(target, DictV):
            for i in range(0, len(items) - 1, 2):
                target.set(items[i], items[i + 1])
            return
        if isinstance(target, _MUTABLE):
            return
        if isinstance(target, Global):
            self.ctx.add(
                "pickle.mutate.global",
                "critical",
                f"{method} on the imported object {target.qual} itself",
                self._loc(at),
                target.qual,
                "malicious",
            )
        elif isinstance(target, Obj):
            self._method_call(target, method, at)
        else:
            raise ParseError(f"{method} on a {describe(target)} value", at)

    def _method_call(self, target: Obj, method: str, at: int) -> None:
        self.calls += 1
        callee = target.callee
        if not isinstance(callee, Global):
            self.ctx.add(
                "pickle.call.indirect",
                "critical",
                f"{method} called on {describe(target)}, the result of an unresolved call",
                self._loc(at),
                None,
                "malicious",
            )

    def _build(self, inst: Any, state: Any, at: int, p: int) -> int:
        """BUILD: __setstate__ or attribute updates; joblib arrays read their raw data here."""
        if isinstance(inst, Global):
            self.ctx.add(
                "pickle.mutate.global",
                "critical",
                f"BUILD sets state on the imported object {inst.qual} itself",
                self._loc(at),
                inst.qual,
                "malicious",
            )
            return p
        if isinstance(inst, Obj):
            self._method_call(inst, "__setstate__", at)
            inst.state = state
            if isinstance(inst.callee, Global) and inst.callee.qual in JOBLIB_WRAPPERS:
                return self._joblib_array(inst, state, at, p)
        elif not isinstance(inst, _MUTABLE):
            raise ParseError(f"BUILD on a {describe(inst)} value", at)
        return p

    def _joblib_array(self, wrapper: Obj, state: Any, at: int, p: int) -> int:
        """joblib writes array bytes (or a nested pickle for object arrays) right after BUILD."""
        from bastion.integrity.scan.joblib_arrays import array_extent

        wrapper.how = "joblib-array"
        info = array_extent(state)
        if info is None:
            self.ctx.add(
                "pickle.joblib.header",
                "high",
                "joblib array header cannot be interpreted; the data after it was not scanned",
                self._loc(at),
                None,
                "error",
            )
            raise ParseError("uninterpretable joblib array header", at)
        hasobject, nbytes, aligned = info
        if hasobject:
            inner = PickleMachine(self.data, p, self.end, self.ctx, self.where)
            inner.release = self.release
            inner.run_stream()
            return inner.pos
        if aligned:
            self._need(p, 1)
            p += 1 + self.data[p]
        self._need(p, nbytes)
        return p + nbytes

    def _persistent(self, pid: Any, at: int) -> Obj:
        """persistent_load belongs to the loader (torch storages); the id itself runs nothing."""
        self.calls += 1
        return Obj(pid, "persistent_load")


def _int(line: bytes, at: int, base: int = 10) -> int:
    try:
        return int(line, base)
    except ValueError:
        raise ParseError(f"invalid integer {line[:20]!r}", at) from None


def _fold_codecs(args: Any) -> bytes | None:
    """`_codecs.encode(text, "latin1")`: how protocol 2 stores bytes; fold it to the bytes."""
    if (
        isinstance(args, tuple)
        and len(args) == 2
        and isinstance(args[0], str)
        and isinstance(args[1], str)
    ):
        try:
            return (
                codecs.encode(args[0], args[1])
                if args[1].lower().replace("-", "") in ("latin1", "iso88591", "utf8", "ascii")
                else None
            )
        except (UnicodeEncodeError, LookupError):
            return None
    return None
