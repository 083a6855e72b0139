"""Jinja chat templates (tokenizer configs, GGUF metadata): constructs that escape the sandbox.

The template is parsed, never rendered. Legitimate chat templates read plain keys of
messages and loop over them; sandbox escapes reach for underscore attributes,
`|attr(...)` with computed names, or globals such as `cycler`, `lipsum` and `self`.
"""

from __future__ import annotations

from bastion.integrity.scan.context import Context

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_ESCAPE_GLOBALS = frozenset(
    {"cycler", "joiner", "lipsum", "self", "config", "request", "url_for",
     "get_flashed_messages", "session", "os", "subprocess"}
)  # fmt: skip
# String constants that only make sense as attribute names handed to a computed lookup.
_DANGEROUS_WORDS = frozenset(
    {
        "popen",
        "subclasses",
        "globals",
        "builtins",
        "mro",
        "import_module",
        "getattr",
        "eval",
        "exec",
        "func_globals",
    }
)


def check_template(text: str, where: str, ctx: Context) -> None:
    """Add findings for sandbox-escaping constructs in one Jinja template."""
    from jinja2 import Environment, nodes
    from jinja2.exceptions import TemplateSyntaxError

    env = Environment(extensions=["jinja2.ext.loopcontrols", "jinja2.ext.do"])
    try:
        tree = env.parse(text)
    except TemplateSyntaxError as exc:
        ctx.add(
            "template.invalid",
            "low",
            f"chat template does not parse ({exc.message}); loaders refuse it",
            where,
            None,
            "suspicious",
        )
        return
    for node in tree.find_all(
        (
            nodes.Getattr,
            nodes.Getitem,
            nodes.Filter,
            nodes.Name,
            nodes.Const,
            nodes.Add,
            nodes.Concat,
        )
    ):
        reason = _judge(node, nodes)
        if reason:
            ctx.add(
                "template.sandbox_escape",
                "critical",
                f"chat template {reason}",
                where,
                None,
                "malicious",
            )


def _judge(node: Any, nodes: Any) -> str | None:
    if isinstance(node, nodes.Add | nodes.Concat):
        parts = node.nodes if isinstance(node, nodes.Concat) else [node.left, node.right]
        for part in parts:
            value = part.value if isinstance(part, nodes.Const) else None
            if isinstance(value, str) and (value.startswith("_") or value.endswith("__")):
                return f"builds a private name from {value!r}"
    if isinstance(node, nodes.Filter):
        for kw in node.kwargs:
            if kw.key == "attribute" and not (
                isinstance(kw.value, nodes.Const) and not str(kw.value.value).startswith("_")
            ):
                return f"uses |{node.name}(attribute=...) with a private or computed name"
    if isinstance(node, nodes.Getattr) and node.attr.startswith("_"):
        return f"reads the private attribute {node.attr!r}"
    if isinstance(node, nodes.Getitem):
        key = node.arg
        if (
            isinstance(key, nodes.Const)
            and isinstance(key.value, str)
            and key.value.startswith("_")
        ):
            return f"reads the private item {key.value!r}"
        if isinstance(key, nodes.Concat | nodes.Add | nodes.Filter):
            return "indexes with a computed name"
    if isinstance(node, nodes.Filter) and node.name in ("attr", "map") and node.args:
        arg = node.args[0]
        if node.name == "attr" and not (
            isinstance(arg, nodes.Const)
            and isinstance(arg.value, str)
            and not arg.value.startswith("_")
        ):
            return "uses |attr with a private or computed name"
    if isinstance(node, nodes.Name) and node.ctx == "load" and node.name in _ESCAPE_GLOBALS:
        return f"uses the global {node.name!r}, a known sandbox-escape handle"
    if isinstance(node, nodes.Const) and isinstance(node.value, str):
        value = node.value
        if value.startswith("__") and value.endswith("__"):
            return f"contains the dunder name {value!r}"
        if value in _DANGEROUS_WORDS:
            return f"contains the identifier {value!r}"
    return None


def check_tokenizer_config(config: dict[str, Any], where: str, ctx: Context) -> None:
    """`chat_template` (string or list of named templates) and remote-code hooks."""
    template = config.get("chat_template")
    templates: list[tuple[str, Any]] = []
    if isinstance(template, str):
        templates.append(("chat_template", template))
    elif isinstance(template, list):
        for i, item in enumerate(template):
            if isinstance(item, dict):
                templates.append((f"chat_template[{item.get('name', i)}]", item.get("template")))
    for label, text in templates:
        if isinstance(text, str):
            check_template(text, f"{where}#{label}", ctx)
    if "auto_map" in config:
        ctx.add(
            "tokenizer.remote_code",
            "medium",
            "auto_map names custom Python classes that load only with trust_remote_code",
            where,
            None,
            "suspicious",
        )
