"""Keras model configs (.keras config.json, .h5 model_config): code that runs on load.

Lambda layers carry marshalled Python bytecode; `module` / `fn` references name any
importable callable. Both are found by walking the JSON, never by loading the model.
"""

from __future__ import annotations

from bastion.integrity.scan.context import Context, walk_objects

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

_KERAS_ROOTS = (
    "keras",
    "tf_keras",
    "tensorflow.keras",
    "tensorflow.python.keras",
    "keras_nlp",
    "keras_hub",
    "keras_cv",
)
_CODE_CLASSES = frozenset({"Lambda", "TFOpLambda", "SlicingOpLambda"})


def looks_like_keras(doc: dict[str, Any]) -> bool:
    return ("class_name" in doc and "config" in doc) or ("module" in doc and "class_name" in doc)


def check_keras_config(doc: Any, where: str, ctx: Context) -> None:
    """Lambda layers are malicious; references outside Keras are judged by the policy."""
    for node, path in walk_objects(doc, ctx):
        cls = node.get("class_name")
        if cls in _CODE_CLASSES:
            ctx.add(
                "keras.lambda",
                "critical",
                f"{cls} layer at {path or '/'} runs serialized Python code on load",
                f"{where}#{path}",
                f"keras:{cls}",
                "malicious",
            )
        module = node.get("module")
        if isinstance(module, str) and module and not module.startswith(_KERAS_ROOTS):
            name = node.get("class_name") if cls != "function" else node.get("config")
            name = name if isinstance(name, str) else "?"
            _judge_reference(module, name, f"{where}#{path}", ctx)
        registered = node.get("registered_name")
        if (
            isinstance(registered, str)
            and ">" in registered
            and not (isinstance(module, str) and module.startswith(_KERAS_ROOTS))
        ):
            ctx.add(
                "keras.custom_object",
                "medium",
                f"custom object {registered!r} needs user code to load",
                f"{where}#{path}",
                registered,
                "suspicious",
            )


def _judge_reference(module: str, name: str, where: str, ctx: Context) -> None:
    verdict = ctx.policy.judge(module, name)
    qual = f"{module}.{name}"
    if verdict == "denied":
        ctx.add(
            "keras.module_reference",
            "critical",
            f"config references {qual}, a known-dangerous callable",
            where,
            qual,
            "malicious",
        )
    elif verdict == "unknown":
        ctx.add(
            "keras.module_reference",
            "medium",
            f"config references {qual}, outside Keras",
            where,
            qual,
            "suspicious",
        )
