"""One resolver from a model spec to a Model, through safe loaders only."""

from __future__ import annotations

import json
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bastion.core.errors import InputError, UnknownModelError, UnsafeFormatError
from bastion.core.model import CheckedModel, Model

SAFE_FORMATS = "safetensors (torch), skops (scikit-learn) or ONNX"
PICKLE_SUFFIXES = {".pkl", ".pickle", ".joblib", ".pt", ".pth", ".bin", ".ckpt", ".dill", ".npy"}
# Types skops does not trust by default that fitted scikit-learn classifiers need. Each is a
# plain data holder; a prefix rule ("anything under sklearn.") would also admit functions such
# as numpy.testing's `runstring`, which is `exec`.
TRUSTED_SKOPS_EXTRAS = frozenset(
    {
        "sklearn.tree._tree.Tree",
        "sklearn.ensemble._hist_gradient_boosting.predictor.TreePredictor",
        "sklearn.ensemble._hist_gradient_boosting.binning._BinMapper",
        "sklearn.neural_network._stochastic_optimizers.AdamOptimizer",
        "sklearn.neural_network._stochastic_optimizers.SGDOptimizer",
        "sklearn._loss.link.Interval",
        "sklearn._loss.link.LogitLink",
        "sklearn._loss.link.MultinomialLogit",
        "sklearn._loss.loss.HalfBinomialLoss",
        "sklearn._loss.loss.HalfMultinomialLoss",
    }
)


def load_model(
    spec: str | Path,
    *,
    api_key: str | None = None,
    trusted_keys: Sequence[Any] | None = None,
    decryption_key: Any | None = None,
    **trusted_options: Any,
) -> Model:
    """Resolve `builtin:NAME`, a file path or an `http(s)://` OIP endpoint to a validated Model.

    Pickle-based files are refused: they run code on load. `api_key` authenticates to a
    remote endpoint (e.g. a `bastion serve` gateway). With `trusted_keys` (public keys)
    and/or `decryption_key`, the trusted path runs: verify the signature, decrypt in
    memory, scan, then load through safe loaders only (`bastion.integrity.loader.load_trusted`,
    which also takes `signature`, `passphrase` and `scan` keyword options).
    """
    if trusted_keys is not None or decryption_key is not None or trusted_options:
        from bastion.integrity.loader import load_trusted

        return CheckedModel(load_trusted(spec, trusted_keys, decryption_key, **trusted_options))
    text = str(spec)
    if text.startswith(("http://", "https://")):
        from bastion.core.adapters.http import HttpModel

        return CheckedModel(HttpModel(text, api_key=api_key))
    if text.startswith("builtin:"):
        from bastion.zoo import build

        return CheckedModel(build(text.removeprefix("builtin:")))
    path = Path(text)
    if not path.exists():
        raise UnknownModelError(
            f"no model at {text!r}",
            fix="pass builtin:NAME (see `bastion zoo`) or a .safetensors, .skops or .onnx file",
        )
    return CheckedModel(load_file(path))


def sniff_format(path: Path) -> str:
    """The format of a model file, from its content: safetensors, skops, onnx or pickle."""
    with path.open("rb") as handle:
        head = handle.read(16)
    if (
        len(head) >= 9
        and head[8:9] == b"{"
        and int.from_bytes(head[:8], "little") < path.stat().st_size
    ):
        return "safetensors"
    if head.startswith(b"PK"):
        try:
            with zipfile.ZipFile(path) as archive:
                names = archive.namelist()
        except zipfile.BadZipFile:
            return "unknown"
        if "schema.json" in names:
            return "skops"
        if any(n.endswith(".pkl") for n in names):
            return "pickle"
        return "zip"
    if head[:1] == b"\x80" or path.suffix.lower() in PICKLE_SUFFIXES:
        return "pickle"
    if path.suffix.lower() == ".onnx":
        return "onnx"
    return "unknown"


def load_file(path: str | Path) -> Model:
    """Load a model file through the safe loader its content calls for."""
    p = Path(path)
    if p.is_dir():
        raise InputError(f"{p} is a directory", fix="pass the model file inside it")
    fmt = sniff_format(p)
    if fmt == "safetensors":
        from bastion.core.adapters import torch_file

        return torch_file.load(p)
    if fmt == "skops":
        return _load_skops(p)
    if fmt == "onnx":
        from bastion.core.adapters.onnx import OnnxModel

        return OnnxModel(p)
    if fmt == "pickle":
        raise UnsafeFormatError(
            f"refusing to load {p.name}: pickle-based files run code when loaded",
            fix=f"convert it to {SAFE_FORMATS}",
        )
    raise UnknownModelError(f"unsupported model file {p.name}", fix=f"use {SAFE_FORMATS}")


def _load_skops(path: Path) -> Model:
    import skops.io as sio

    from bastion.core.adapters.sklearn import SklearnModel

    untrusted = sio.get_untrusted_types(file=path)
    refused = sorted(set(untrusted) - TRUSTED_SKOPS_EXTRAS)
    if refused:
        raise UnsafeFormatError(
            f"{path.name} has types Bastion does not trust: {', '.join(refused[:5])}",
            fix="save only scikit-learn estimators with skops, or export the model to ONNX",
        )
    estimator = sio.load(path, trusted=untrusted)
    meta = _sidecar(path)
    bounds = meta.get("input_bounds")
    return SklearnModel(
        estimator,
        input_bounds=tuple(bounds) if bounds else None,
        class_names=meta.get("class_names"),
    )


def _sidecar(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    if not side.exists():
        return {}
    try:
        meta = json.loads(side.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise InputError(f"{side} is not valid JSON", fix="delete or repair it") from exc
    return meta if isinstance(meta, dict) else {}


def save_model(model: Model, path: str | Path) -> None:
    """Save a torch or scikit-learn model in its safe format (atomic)."""
    from bastion.core.fs import atomic_file, write_bytes_atomic

    inner = getattr(model, "inner", model)
    p = Path(path)
    if hasattr(inner, "module"):
        from bastion.core.adapters import torch_file

        torch_file.save(inner, p)  # type: ignore[arg-type]
        return
    estimator = getattr(inner, "estimator", None)
    if estimator is None:
        raise InputError(
            f"cannot save a {type(inner).__name__}", fix="save torch or scikit-learn models"
        )
    import skops.io as sio

    meta = {"class_names": getattr(inner, "class_names", None), "input_bounds": inner.input_bounds}
    write_bytes_atomic(p.with_name(p.name + ".json"), json.dumps(meta).encode())
    with atomic_file(p, "wb") as handle:
        handle.write(sio.dumps(estimator))  # type: ignore[attr-defined]
