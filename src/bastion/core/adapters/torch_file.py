"""A safe file format for torch classifiers: safetensors weights plus a JSON layer spec.

The architecture is data from a fixed vocabulary of layers, never code, so loading
a file runs nothing but `nn.Sequential` construction.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from safetensors.torch import load as load_safetensors
from safetensors.torch import save as save_safetensors
from torch import nn

from bastion.core.adapters.torch import TorchModel
from bastion.core.errors import InputError
from bastion.core.fs import write_bytes_atomic

FORMAT_TAG = "bastion.torch-sequential.v1"


def _layer(spec: dict[str, Any]) -> nn.Module:
    kind = spec.get("type")
    if kind == "conv2d":
        return nn.Conv2d(spec["in"], spec["out"], spec["kernel"], padding=spec.get("padding", 0))
    if kind == "linear":
        return nn.Linear(spec["in"], spec["out"])
    if kind == "relu":
        return nn.ReLU()
    if kind == "maxpool2d":
        return nn.MaxPool2d(spec["kernel"])
    if kind == "flatten":
        return nn.Flatten()
    if kind == "dropout":
        return nn.Dropout(spec.get("p", 0.5))
    if kind == "batchnorm1d":
        return nn.BatchNorm1d(spec["features"])
    raise InputError(
        f"unknown layer type {kind!r} in model spec", fix="use a layer Bastion's format supports"
    )


def build_sequential(layers: list[dict[str, Any]]) -> nn.Sequential:
    """Build an `nn.Sequential` from a list of layer specs."""
    try:
        return nn.Sequential(*(_layer(spec) for spec in layers))
    except (KeyError, TypeError) as exc:
        raise InputError(
            f"malformed layer spec: {exc}", fix="re-save the model with Bastion"
        ) from exc


def to_bytes(model: TorchModel) -> bytes:
    """Serialize a TorchModel over an `nn.Sequential` to safetensors bytes with its spec."""
    layers = layers_of(model.module)
    meta = {
        "format": FORMAT_TAG,
        "layers": json.dumps(layers),
        "input_shape": json.dumps(list(model.input_shape)),
        "n_classes": str(model.n_classes),
        "input_bounds": json.dumps(model.input_bounds),
        "class_names": json.dumps(model.class_names),
    }
    state = {k: v.detach().contiguous() for k, v in model.module.state_dict().items()}
    return save_safetensors(state, metadata=meta)


def from_bytes(data: bytes) -> TorchModel:
    """Load a TorchModel written by `to_bytes`."""
    try:
        header_len = int.from_bytes(data[:8], "little")
        header = json.loads(data[8 : 8 + header_len])
        meta = header.get("__metadata__") or {}
    except (ValueError, UnicodeDecodeError) as exc:
        raise InputError(
            f"not a safetensors file: {exc}", fix="pass a file saved by Bastion"
        ) from exc
    if meta.get("format") != FORMAT_TAG:
        raise InputError(
            "safetensors file carries no Bastion architecture spec",
            fix="save it with bastion.core.adapters.torch_file.save, or export it to ONNX",
        )
    try:
        layers = json.loads(meta["layers"])
        module = build_sequential(layers)
        module.load_state_dict(load_safetensors(data))
        bounds = json.loads(meta["input_bounds"])
        return TorchModel(
            module,
            input_shape=tuple(json.loads(meta["input_shape"])),
            n_classes=int(meta["n_classes"]),
            input_bounds=tuple(bounds) if bounds is not None else None,
            class_names=json.loads(meta["class_names"]),
        )
    except (KeyError, ValueError, RuntimeError) as exc:
        raise InputError(
            f"inconsistent Bastion torch model: {exc}", fix="re-save the model"
        ) from exc


def save(model: TorchModel, path: str | Path) -> None:
    """Write the model atomically to `path`."""
    write_bytes_atomic(path, to_bytes(model))


def load(path: str | Path) -> TorchModel:
    """Read a model written by `save`."""
    return from_bytes(Path(path).read_bytes())


def layers_of(module: nn.Module) -> list[dict[str, Any]]:
    """The spec of a sequential module built from supported layers (inverse of build_sequential)."""
    if not isinstance(module, nn.Sequential):
        raise InputError(
            "only nn.Sequential modules can be saved in this format", fix="use nn.Sequential"
        )
    specs: list[dict[str, Any]] = []
    for layer in module:
        if isinstance(layer, nn.Conv2d):
            pad = layer.padding[0] if isinstance(layer.padding, tuple) else layer.padding
            specs.append(
                {
                    "type": "conv2d",
                    "in": layer.in_channels,
                    "out": layer.out_channels,
                    "kernel": layer.kernel_size[0],
                    "padding": pad,
                }
            )
        elif isinstance(layer, nn.Linear):
            specs.append({"type": "linear", "in": layer.in_features, "out": layer.out_features})
        elif isinstance(layer, nn.ReLU):
            specs.append({"type": "relu"})
        elif isinstance(layer, nn.MaxPool2d):
            k = layer.kernel_size
            specs.append({"type": "maxpool2d", "kernel": k if isinstance(k, int) else k[0]})
        elif isinstance(layer, nn.Flatten):
            specs.append({"type": "flatten"})
        elif isinstance(layer, nn.Dropout):
            specs.append({"type": "dropout", "p": layer.p})
        elif isinstance(layer, nn.BatchNorm1d):
            specs.append({"type": "batchnorm1d", "features": layer.num_features})
        else:
            raise InputError(
                f"layer {type(layer).__name__} is not in the safe format's vocabulary",
                fix="export the model to ONNX instead",
            )
    return specs
