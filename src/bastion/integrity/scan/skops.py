"""skops `schema.json`: every type and function a skops file names, judged by the policy.

skops rebuilds objects from the `__module__`/`__class__` pairs in its JSON schema, and
some node kinds call what they name (functions, reduce constructors, operators). The
JSON is walked as data, never loaded with skops.
"""

from __future__ import annotations

from bastion.integrity.scan.context import Context, walk_objects

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

# node kinds that hand back the function they name: allowed only by an exact entry
_FUNCTIONS = frozenset({"FunctionNode", "MethodNode", "OperatorFuncNode"})
# node kinds that call the type they name, like a pickle REDUCE: judged as pickle imports
_CALLING = frozenset({"ConstructorFromReduceNode", "ReduceNode", *_FUNCTIONS})


def looks_like_skops(doc: dict[str, Any]) -> bool:
    return "__loader__" in doc and "__module__" in doc


def check_skops_schema(doc: Any, where: str, ctx: Context) -> None:
    """Judge each node's type; a called function must be allowed by an exact entry."""
    for node, path in walk_objects(doc, ctx):
        module, name, loader = node.get("__module__"), node.get("__class__"), node.get("__loader__")
        if isinstance(module, str) and isinstance(name, str):
            content = node.get("content")
            if loader == "MethodNode" and isinstance(content, dict):
                method = content.get("func")
                name = f"{name}.{method}" if isinstance(method, str) else f"{name}.?"
            _judge(module, name, str(loader), f"{where}#{path or '/'}", ctx)


def _judge(module: str, name: str, loader: str, where: str, ctx: Context) -> None:
    verdict = ctx.policy.judge(module, name)
    if (
        verdict == "allowed"
        and loader in _FUNCTIONS
        and not ctx.policy.allows_exactly(module, name)
    ):
        verdict = "unknown"
    qual = f"{module}.{name}"
    what = "calls" if loader in _CALLING else "builds"
    if verdict == "denied":
        ctx.add(
            "skops.reference.denied",
            "critical",
            f"skops {loader} {what} {qual}, a known-dangerous callable",
            where,
            qual,
            "malicious",
        )
    elif verdict == "unknown":
        strict = ctx.policy.name == "strict"
        ctx.add(
            "skops.reference.unknown",
            "high" if strict else "medium",
            f"skops {loader} {what} {qual}, which is not on the allowlist",
            where,
            qual,
            "malicious" if strict else "suspicious",
        )
