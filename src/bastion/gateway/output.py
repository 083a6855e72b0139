"""The `output_defence` and `watermark` stages: harden and mark the answer before it leaves."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from bastion.core.model import Model
from bastion.defenses.dawn import PairLog, ResponseWatermark
from bastion.defenses.output import LabelOnly, output_defence
from bastion.gateway.chain import Context
from bastion.gateway.defences import defences_of

if TYPE_CHECKING:
    from bastion.gateway.app import Gateway


def set_outputs(ctx: Context, probs: np.ndarray) -> None:
    """Replace the answer's probabilities (the OIP body is rebuilt from them)."""
    ctx.outputs = np.asarray(probs, dtype=np.float32)
    if ctx.result is not None:
        ctx.result["outputs"][0]["data"] = ctx.outputs.ravel().tolist()


class _Signature:
    """A stand-in model carrying only a signature: the stages transform answers, not calls."""

    def __init__(self, n_classes: int) -> None:
        self.n_classes = n_classes
        self.input_shape: tuple[int, ...] = ()
        self.input_bounds: tuple[float, float] | None = None

    def predict_proba(self, x: np.ndarray) -> np.ndarray:  # pragma: no cover - never called
        raise NotImplementedError


class OutputDefence:
    """Apply the configured defence (to all keys or to flagged ones) and the label-only action."""

    name = "output_defence"

    def __init__(self, gateway: Gateway) -> None:
        self.defences = defences_of(gateway)
        self.config = self.defences.config.output
        self.key = self.defences.key(b"output")
        self._wrappers: dict[int, tuple[Model, LabelOnly]] = {}

    def wrappers(self, n_classes: int) -> tuple[Model, LabelOnly]:
        if n_classes not in self._wrappers:
            base = _Signature(n_classes)
            defence = output_defence(base, self.config.defence, self.key, **self.config.params)
            self._wrappers[n_classes] = (defence, LabelOnly(base))
        return self._wrappers[n_classes]

    async def __call__(self, ctx: Context) -> None:
        if ctx.outputs is None or ctx.inputs is None:
            return
        incident = self.defences.incident(ctx)
        defence, label_only = self.wrappers(ctx.outputs.shape[1])
        probs = np.asarray(ctx.outputs, dtype=np.float64)
        applied = []
        if self.config.defence != "none" and (self.config.apply_to == "all" or incident):
            probs = defence.transform(ctx.inputs, probs)  # type: ignore[attr-defined]
            applied.append(self.config.defence)
        if incident is not None and "label-only" in incident.actions:
            probs = label_only.transform(ctx.inputs, probs)
            applied.append("label-only")
        if applied:
            set_outputs(ctx, probs)


class Watermark:
    """DAWN: alter a keyed fraction of answers and record the pairs for `verify-clone`."""

    name = "watermark"

    def __init__(self, gateway: Gateway) -> None:
        self.defences = defences_of(gateway)
        config = self.defences.config.watermark
        self.mark = ResponseWatermark(
            self.defences.key(b"dawn"), config.fraction, config.control_fraction
        )
        self.pairs = PairLog(self.defences.pairs_file)

    async def __call__(self, ctx: Context) -> None:
        if ctx.outputs is None or ctx.inputs is None:
            return
        probs, marked = self.mark.apply(ctx.inputs, np.asarray(ctx.outputs, dtype=np.float64))
        watermarked = int(np.count_nonzero(marked.watermark))
        if watermarked or np.count_nonzero(marked.control):
            self.pairs.append(ctx.inputs, marked, ctx.model_name or "")
        if watermarked:
            self.defences.watermarked.inc(watermarked)
            set_outputs(ctx, probs)
