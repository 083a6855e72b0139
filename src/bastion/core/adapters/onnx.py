"""ONNX classifiers run with onnxruntime."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Literal

import numpy as np

from bastion.core.errors import InputError


class OnnxModel:
    """A classifier `.onnx` file; outputs are probabilities, or logits to soft-max."""

    def __init__(
        self,
        source: str | Path | bytes,
        *,
        outputs: Literal["probabilities", "logits"] = "probabilities",
        input_bounds: tuple[float, float] | None = None,
        class_names: Sequence[str] | None = None,
    ) -> None:
        import onnxruntime as ort

        data = source if isinstance(source, bytes) else Path(source).read_bytes()
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(data, options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors
            raise InputError(
                f"not a loadable ONNX model: {exc}", fix="export the model again"
            ) from exc
        inputs = self.session.get_inputs()
        if len(inputs) != 1:
            raise InputError(
                f"ONNX model has {len(inputs)} inputs, expected 1",
                fix="export a single-input classifier",
            )
        self.input_name = inputs[0].name
        shape = inputs[0].shape[1:]
        if not all(isinstance(d, int) for d in shape):
            raise InputError(
                "ONNX input has symbolic non-batch dimensions",
                fix="export with fixed feature shape",
            )
        self.input_shape = tuple(int(d) for d in shape)
        self.output_name, n_classes = self._probability_output()
        self.n_classes = n_classes
        self.outputs = outputs
        self.input_bounds = input_bounds
        self.class_names = (
            list(class_names) if class_names is not None else [str(i) for i in range(n_classes)]
        )

    def _probability_output(self) -> tuple[str, int]:
        for out in self.session.get_outputs():
            shape = out.shape
            if out.type == "tensor(float)" and len(shape) == 2 and isinstance(shape[1], int):
                return out.name, int(shape[1])
        raise InputError(
            "ONNX model has no (N, n_classes) float output",
            fix="export the classifier with a probability or logit output",
        )

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        (out,) = self.session.run(
            [self.output_name], {self.input_name: np.asarray(x, dtype=np.float32)}
        )
        out = np.asarray(out, dtype=np.float64)
        if self.outputs == "logits":
            out = np.exp(out - out.max(axis=1, keepdims=True))
            out /= out.sum(axis=1, keepdims=True)
        return out


def export_torch(model: object, path: str | Path) -> None:
    """Export a TorchModel to a probability-output ONNX file (atomic write)."""
    import io
    import warnings

    import torch

    from bastion.core.fs import write_bytes_atomic

    module = torch.nn.Sequential(model.module, torch.nn.Softmax(dim=1)).eval()  # type: ignore[attr-defined]
    example = torch.zeros((1, *model.input_shape))  # type: ignore[attr-defined]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter(
            "ignore", DeprecationWarning
        )  # the TorchScript exporter needs no onnxscript
        torch.onnx.export(
            module,
            (example,),
            buf,  # type: ignore[arg-type]  # file-like objects are accepted
            input_names=["x"],
            output_names=["probabilities"],
            dynamic_axes={"x": {0: "n"}, "probabilities": {0: "n"}},
            dynamo=False,
        )
    write_bytes_atomic(path, buf.getvalue())
