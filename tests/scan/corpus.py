"""Build the labelled scan corpus: benign model files and malicious ones, one per technique.

Nothing is checked in: every file is generated here. Malicious payloads would only create
the file `SENTINEL` in the corpus directory; building them never runs them (pickles are
written as raw opcodes or by pickling `__reduce__` objects, which does not call anything).

Run as a script to build a corpus directory: `python tests/scan/corpus.py OUT_DIR`.
"""

from __future__ import annotations

import base64
import bz2
import gzip
import io
import json
import lzma
import os
import pickle
import struct
import sys
import tarfile
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SENTINEL = "SENTINEL"


@dataclass(frozen=True)
class Sample:
    """One corpus file: its label, the technique, and the verdict Bastion must give."""

    path: str
    label: str  # "benign" | "malicious"
    technique: str
    expect: str  # "safe" | "suspicious" | "malicious" | "detected" (suspicious or malicious)


# ---- raw pickle helpers --------------------------------------------------------------------
def _s(text: str) -> bytes:
    """SHORT_BINUNICODE."""
    raw = text.encode()
    return b"\x8c" + bytes([len(raw)]) + raw


def _glob(module: str, name: str) -> bytes:
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


def call(module: str, name: str, *args: str, proto: int = 2) -> bytes:
    """`module.name(*args)` with GLOBAL + REDUCE."""
    body = _glob(module, name) + b"(" + b"".join(_binunicode(a) for a in args) + b"tR."
    return (b"\x80" + bytes([proto]) if proto >= 2 else b"") + body


def _binunicode(text: str) -> bytes:
    raw = text.encode()
    return b"X" + struct.pack("<I", len(raw)) + raw


class _Reduce:
    """Pickles as `func(*args)`; only pickled, never unpickled here."""

    def __init__(self, func: Any, *args: Any) -> None:
        self.func, self.args = func, args

    def __reduce__(self) -> tuple[Any, tuple[Any, ...]]:
        return self.func, self.args


def _zip(members: dict[str, bytes], method: int = zipfile.ZIP_STORED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", method) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _tar(members: dict[str, bytes], mode: str = "w") -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode=mode) as tf:  # type: ignore[call-overload]
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
    return buf.getvalue()


# ---- the corpus ------------------------------------------------------------------------------
def build(out: Path) -> list[Sample]:
    """Write every sample under `out` and return the labelled manifest."""
    out.mkdir(parents=True, exist_ok=True)
    sentinel = str(out / SENTINEL)
    cmd = f"touch {sentinel}"
    code = f"open({sentinel!r}, 'w').close()"
    samples: list[Sample] = []

    def put(name: str, data: bytes, label: str, technique: str, expect: str) -> None:
        path = out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        samples.append(Sample(name, label, technique, expect))

    _benign(out, put)
    _malicious_pickles(put, cmd, code)
    _dotted_aliases(put, cmd, code)
    _unusual_pickles(put, cmd)
    _malicious_skops(put, cmd, code)
    _malicious_containers(put, cmd, code)
    _malicious_formats(out, put, samples, cmd, code)
    return samples


def _benign(out: Path, put: Callable[..., None]) -> None:
    import numpy as np
    import torch
    from safetensors.numpy import save as st_save
    from sklearn.ensemble import RandomForestClassifier
    from sklearn.linear_model import LogisticRegression

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 3))
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    put(
        "benign/torch_state_dict.pt",
        buf.getvalue(),
        "benign",
        "torch.save state_dict (zip)",
        "safe",
    )
    buf = io.BytesIO()
    torch.save(
        {
            "model": net.state_dict(),
            "epoch": 3,
            "opt": torch.optim.SGD(net.parameters(), lr=0.1).state_dict(),
        },
        buf,
    )
    put("benign/torch_checkpoint.pth", buf.getvalue(), "benign", "torch checkpoint dict", "safe")
    buf = io.BytesIO()
    text = b"cmodule name\nfunc\n(tR" + b"." * 8  # raw storage that reads like a pickle
    torch.save({"bytes": torch.tensor(list(text), dtype=torch.uint8)}, buf)
    put(
        "benign/torch_uint8_pickle_like.pt",
        buf.getvalue(),
        "benign",
        "uint8 tensor storage that starts like a protocol-0 pickle",
        "safe",
    )
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf, _use_new_zipfile_serialization=False)
    put(
        "benign/torch_legacy.pt",
        buf.getvalue(),
        "benign",
        "torch legacy magic-number format",
        "safe",
    )
    buf = io.BytesIO()
    torch.save(net, buf)
    put("benign/torch_full_module.pt", buf.getvalue(), "benign", "full nn.Module pickle", "safe")
    buf = io.BytesIO()
    torch.save(_UserNet(), buf)
    put(
        "benign/torch_user_module.pt",
        buf.getvalue(),
        "benign",
        "full nn.Module with a user class",
        "suspicious",
    )
    put(
        "benign/tensor_plain_pickle.pkl",
        pickle.dumps(torch.arange(6.0)),
        "benign",
        "tensor via plain pickle (_load_from_bytes)",
        "safe",
    )

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(60, 4)), rng.integers(0, 2, 60)
    logreg = LogisticRegression().fit(x, y)
    forest = RandomForestClassifier(n_estimators=3, max_depth=3, random_state=0).fit(x, y)
    import joblib

    for name, model in (("logreg", logreg), ("forest", forest)):
        buf = io.BytesIO()
        joblib.dump(model, buf)
        put(f"benign/sklearn_{name}.joblib", buf.getvalue(), "benign", "sklearn via joblib", "safe")
        put(
            f"benign/sklearn_{name}.pkl",
            pickle.dumps(model),
            "benign",
            "sklearn via pickle",
            "safe",
        )
    import skops.io as sio

    for name, model in (("logreg", logreg), ("forest", forest)):
        put(f"benign/sklearn_{name}.skops", sio.dumps(model), "benign", "sklearn via skops", "safe")
    for compress in ("zlib", "gzip", "bz2", "xz", "lzma"):
        path = out / f"benign/sklearn_forest.joblib.{compress}"
        path.parent.mkdir(parents=True, exist_ok=True)
        joblib.dump(forest, path, compress=(compress, 3))
        put(
            path.relative_to(out).as_posix(),
            path.read_bytes(),
            "benign",
            f"joblib compressed ({compress})",
            "safe",
        )
    for proto in range(6):
        obj = {"weights": [0.5, 1.5], "name": "m", "shape": (2, 3), "ok": True, "arr": np.arange(4)}
        put(
            f"benign/plain_p{proto}.pkl",
            pickle.dumps(obj, protocol=proto),
            "benign",
            f"plain pickle protocol {proto}",
            "safe",
        )
    buf = io.BytesIO()
    np.save(buf, rng.normal(size=(5, 5)))
    put("benign/array.npy", buf.getvalue(), "benign", "numpy .npy numeric", "safe")
    buf = io.BytesIO()
    np.savez_compressed(buf, a=np.arange(10), b=np.ones((2, 2)))
    put("benign/arrays.npz", buf.getvalue(), "benign", "numpy .npz", "safe")
    put(
        "benign/model.safetensors",
        st_save({"w": np.ones((3, 4), np.float32), "b": np.zeros(4, np.float32)}),
        "benign",
        "safetensors",
        "safe",
    )
    put(
        "benign/keras_config.json",
        json.dumps(_keras_config()).encode(),
        "benign",
        "Keras config.json",
        "safe",
    )
    put(
        "benign/model.keras",
        _zip(
            {
                "config.json": json.dumps(_keras_config()).encode(),
                "metadata.json": b'{"keras_version": "3.5.0"}',
            }
        ),
        "benign",
        "Keras .keras archive",
        "safe",
    )
    _h5(out / "benign/model.h5", _keras_config())
    put(
        "benign/model.h5",
        (out / "benign/model.h5").read_bytes(),
        "benign",
        "Keras .h5 model_config",
        "safe",
    )
    put("benign/model.onnx", _onnx_model(), "benign", "ONNX model", "safe")
    put(
        "benign/tokenizer_config.json",
        json.dumps({"chat_template": _LLAMA_TEMPLATE, "bos_token": "<s>"}).encode(),
        "benign",
        "tokenizer chat template",
        "safe",
    )
    put(
        "benign/model.gguf",
        _gguf({"general.name": "tiny", "tokenizer.chat_template": _LLAMA_TEMPLATE}),
        "benign",
        "GGUF metadata",
        "safe",
    )
    put(
        "benign/README.md", b"# A model card\nNothing to run here.\n", "benign", "text file", "safe"
    )


class _UserNet:
    """Stand-in for a user-defined nn.Module class (pickled by reference to this module)."""

    def __init__(self) -> None:
        import torch

        self.layer = torch.nn.Linear(2, 2)


_LLAMA_TEMPLATE = (
    "{{ bos_token }}{% for message in messages %}{% if message['role'] == 'system' %}"
    "{{ '<<SYS>>' + message['content'] + '<</SYS>>' }}{% elif message['role'] == 'user' %}"
    "{{ '[INST] ' + message['content'] | trim + ' [/INST]' }}{% else %}{{ message['content'] }}"
    "{% endif %}{% if loop.last and add_generation_prompt %}{{ ' ' }}{% endif %}{% endfor %}"
)


def _keras_config(extra_layer: dict[str, Any] | None = None) -> dict[str, Any]:
    layers: list[dict[str, Any]] = [
        {
            "module": "keras.layers",
            "class_name": "InputLayer",
            "config": {"batch_shape": [None, 4]},
            "registered_name": None,
        },
        {
            "module": "keras.layers",
            "class_name": "Dense",
            "config": {
                "units": 3,
                "activation": {
                    "module": "keras.activations",
                    "class_name": "function",
                    "config": "relu",
                    "registered_name": "relu",
                },
            },
            "registered_name": None,
        },
    ]
    if extra_layer:
        layers.append(extra_layer)
    return {
        "module": "keras",
        "class_name": "Sequential",
        "config": {"name": "seq", "layers": layers},
        "registered_name": None,
    }


def _h5(path: Path, config: dict[str, Any]) -> None:
    import h5py

    path.parent.mkdir(parents=True, exist_ok=True)
    with h5py.File(path, "w") as handle:
        handle.attrs["model_config"] = json.dumps(config)
        handle.create_dataset("w", data=[1.0, 2.0])


def _onnx_model(location: str | None = None, domain: str = "") -> bytes:
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weight = numpy_helper.from_array(np.ones((2, 2), np.float32), "W")
    if location is not None:
        weight.ClearField("raw_data")
        weight.data_location = TensorProto.EXTERNAL
        for key, value in (("location", location), ("offset", "0"), ("length", "16")):
            entry = weight.external_data.add()
            entry.key, entry.value = key, value
    node = helper.make_node("MatMul" if not domain else "Evil", ["X", "W"], ["Y"], domain=domain)
    graph = helper.make_graph(
        [node],
        "g",
        [helper.make_tensor_value_info("X", TensorProto.FLOAT, [1, 2])],
        [helper.make_tensor_value_info("Y", TensorProto.FLOAT, [1, 2])],
        [weight],
    )
    opsets = [helper.make_opsetid("", 17)] + ([helper.make_opsetid(domain, 1)] if domain else [])
    return onnx.helper.make_model(graph, opset_imports=opsets).SerializeToString()


def _gguf(meta: dict[str, str]) -> bytes:
    out = b"GGUF" + struct.pack("<IQQ", 3, 0, len(meta))
    for key, value in meta.items():
        k, v = key.encode(), value.encode()
        out += struct.pack("<Q", len(k)) + k + struct.pack("<I", 8) + struct.pack("<Q", len(v)) + v
    return out


def _malicious_pickles(put: Callable[..., None], cmd: str, code: str) -> None:
    m = "malicious/pickle/"
    for proto in range(6):
        put(
            f"{m}os_system_p{proto}.pkl",
            pickle.dumps(_Reduce(os.system, cmd), protocol=proto),
            "malicious",
            f"os.system REDUCE protocol {proto}",
            "malicious",
        )
    put(f"{m}exec.pkl", call("builtins", "exec", code), "malicious", "builtins.exec", "malicious")
    put(
        f"{m}eval_py2.pkl",
        call("__builtin__", "eval", code),
        "malicious",
        "__builtin__.eval (protocol 2 name mapping)",
        "malicious",
    )
    runners = [
        ("timeit", "timeit", code), ("cProfile", "run", code), ("profile", "run", code),
        ("pdb", "run", code), ("runpy", "run_path", "/nonexistent"),
        ("pydoc", "pipepager", "x", cmd),
        ("subprocess", "getoutput", cmd), ("pip", "main", "install"),
        ("numpy.testing._private.utils", "runstring", code),
        ("torch.utils.cpp_extension", "load_inline", "x"), ("torch.hub", "load", "x"),
        ("code", "interact", code), ("idlelib.pyshell", "main", code),
        ("webbrowser", "open", "file:///"),
        ("ensurepip", "bootstrap", "x"), ("_posixsubprocess", "fork_exec", cmd),
        ("pty", "spawn", cmd),
        ("asyncio.unix_events", "_UnixSubprocessTransport", cmd),
        ("torch._inductor.codecache", "compile_file", cmd), ("trace", "Trace", code),
        ("bdb", "Bdb", code),
    ]  # fmt: skip
    for module, name, *args in runners:
        put(
            f"{m}runner_{module.replace('.', '_')}_{name}.pkl",
            call(module, name, *args),
            "malicious",
            f"stdlib/tool runner {module}.{name}",
            "malicious",
        )
    # STACK_GLOBAL operands from memo slots, and from protocol-0 STRING opcodes
    memo = (
        b"\x80\x04"
        + _s("posix")
        + b"\x94"
        + _s("system")
        + b"\x94"
        + b"00"
        + b"h\x00h\x01\x93"
        + _s(cmd)
        + b"\x85R."
    )
    put(
        f"{m}stack_global_memo.pkl",
        memo,
        "malicious",
        "STACK_GLOBAL operands via memo",
        "malicious",
    )
    proto0 = b"\x80\x04S'os'\nS'system'\n\x93" + b"S'" + cmd.encode() + b"'\n\x85R."
    put(
        f"{m}stack_global_proto0_strings.pkl",
        proto0,
        "malicious",
        "STACK_GLOBAL operands from STRING opcodes",
        "malicious",
    )
    dup = (
        b"\x80\x04"
        + _s("os")
        + b"q\x07"
        + b"0"
        + _s("builtins")
        + b"h\x07"
        + b"0"
        + _s("system")
        + b"\x93"
        + _s(cmd)
        + b"\x85R."
    )
    put(
        f"{m}stack_global_binput_shuffle.pkl",
        dup,
        "malicious",
        "memo BINPUT/BINGET shuffle",
        "detected",
    )
    put(
        f"{m}dotted_name.pkl",
        b"\x80\x04" + _glob("posixpath", "os.system") + _s(cmd) + b"\x85R.",
        "malicious",
        "dotted name through a harmless module",
        "malicious",
    )
    put(
        f"{m}inst.pkl",
        b"(" + _binunicode(cmd) + b"ios\nsystem\n.",
        "malicious",
        "INST opcode",
        "malicious",
    )
    put(
        f"{m}obj.pkl",
        b"(" + _glob("os", "system") + _binunicode(cmd) + b"o.",
        "malicious",
        "OBJ opcode",
        "malicious",
    )
    put(
        f"{m}newobj_ex.pkl",
        b"\x80\x04" + _glob("subprocess", "Popen") + b"]" + _s(cmd) + b"a\x85}\x92.",
        "malicious",
        "NEWOBJ_EX",
        "malicious",
    )
    put(
        f"{m}ext_code.pkl",
        b"\x80\x02\x82\x01" + _s(cmd) + b"\x85R.",
        "malicious",
        "extension code",
        "malicious",
    )
    getattr_chain = (
        b"\x80\x04"
        + _glob("builtins", "getattr")
        + b"("
        + _glob("builtins", "__import__")
        + b"("
        + _s("os")
        + b"tR"
        + _s("system")
        + b"tR("
        + _s(cmd)
        + b"tR."
    )
    put(
        f"{m}getattr_chain.pkl",
        getattr_chain,
        "malicious",
        "getattr(__import__('os'), 'system')",
        "malicious",
    )
    put(
        f"{m}indirect_call.pkl",
        b"\x80\x04" + _glob("collections", "OrderedDict") + b")R" + _s(cmd) + b"\x85R.",
        "malicious",
        "call on a call result",
        "malicious",
    )
    put(
        f"{m}build_global.pkl",
        b"\x80\x04"
        + _glob("torch._utils", "_rebuild_tensor_v2")
        + b"}"
        + _s("__code__")
        + b"Ns"
        + b"b.",
        "malicious",
        "BUILD state into an imported object",
        "malicious",
    )
    put(
        f"{m}broken_after_payload.pkl",
        call("os", "system", cmd)[:-1] + b"\xff\xff garbage",
        "malicious",
        "broken pickle after the payload",
        "malicious",
    )
    put(
        f"{m}truncated_payload.pkl",
        call("os", "system", cmd)[:-1],
        "malicious",
        "truncated pickle (no STOP)",
        "malicious",
    )
    put(
        f"{m}concatenated.pkl",
        pickle.dumps({"ok": 1}, protocol=2) + call("os", "system", cmd),
        "malicious",
        "second concatenated stream",
        "malicious",
    )
    put(
        f"{m}operator_attrgetter.pkl",
        call("_operator", "attrgetter", "system"),
        "malicious",
        "_operator.attrgetter",
        "malicious",
    )
    put(
        f"{m}unknown_module.pkl",
        call("evil_pkg.payload", "run", cmd),
        "malicious",
        "unlisted third-party callable",
        "detected",
    )
    inner = call("os", "system", cmd)
    loader = (
        b"\x80\x04"
        + _glob("torch.storage", "_load_from_bytes")
        + b"C"
        + bytes([len(inner)])
        + inner
        + b"\x85R."
    )
    put(
        f"{m}nested_raw_loader.pkl",
        loader,
        "malicious",
        "nested pickle bytes handed to a loader",
        "malicious",
    )
    b64 = base64.b64encode(inner).decode()
    put(
        f"{m}nested_b64_loader.pkl",
        b"\x80\x04" + _glob("torch.storage", "_load_from_bytes") + _s(b64) + b"\x85R.",
        "malicious",
        "nested base64 pickle handed to a loader",
        "malicious",
    )
    put(
        f"{m}renamed.safetensors",
        call("os", "system", cmd),
        "malicious",
        "pickle renamed to .safetensors",
        "malicious",
    )
    put(
        f"{m}renamed.txt",
        call("os", "system", cmd, proto=0),
        "malicious",
        "protocol-0 pickle renamed to .txt",
        "malicious",
    )
    put(
        f"{m}polyglot_pickle_zip.pt",
        call("os", "system", cmd) + _zip({"a/data.pkl": pickle.dumps({})}),
        "malicious",
        "pickle with a zip appended",
        "malicious",
    )


def _stack_global(module: str, name: str) -> bytes:
    """STACK_GLOBAL: protocol 4+ resolves a dotted `name` attribute by attribute."""
    return _s(module) + _s(name) + b"\x93"


def _sbytes(data: bytes) -> bytes:
    return b"B" + struct.pack("<I", len(data)) + data


def _dotted_aliases(put: Callable[..., None], cmd: str, code: str) -> None:
    """Dangerous callables reached through a dotted or re-exported name under allowed modules."""
    m = "malicious/alias/"
    inner = call("posix", "system", cmd, proto=0)
    aliases = [
        ("sklearn.utils.estimator_checks", "pickle.loads", _sbytes(inner) + b"\x85R."),
        ("torch.nn.modules.module", "torch.storage._load_from_bytes", _sbytes(inner) + b"\x85R."),
        ("sklearn.utils.validation", "joblib.load", _s("/nonexistent.joblib") + b"\x85R."),
        ("numpy.random._common", "np.load", _s("/nonexistent.npy") + b"N\x88\x87R."),
        ("torch.optim.lr_scheduler", "types.FunctionType", b")R."),
        ("torch.nn.modules.module", "torch.jit.load", _s("/nonexistent.pt") + b"\x85R."),
        ("sklearn.utils.discovery", "import_module", _s("os") + b"\x85R."),
        ("sklearn.feature_selection._base", "attrgetter", _s("system") + b"\x85R."),
        ("numpy.random.mtrand", "operator.attrgetter", _s("system") + b"\x85R."),
        ("torch.nn.modules.module", "os.system", _s(cmd) + b"\x85R."),
        ("sklearn.callback._transport", "Listener", _s("/tmp/corpus.sock") + b"\x85R."),
    ]
    for module, name, args in aliases:
        put(
            f"{m}{module.replace('.', '_')}__{name.replace('.', '_')}.pkl",
            b"\x80\x04" + _stack_global(module, name) + args + b".",
            "malicious",
            f"{name} reached through allowed module {module}",
            "malicious",
        )
    put(
        f"{m}sklearn_function_under_wildcard.pkl",
        b"\x80\x04"
        + _stack_global("sklearn.utils.validation", "check_memory")
        + _s("/tmp")
        + b"\x85R.",
        "malicious",
        "a function (not a class) under a wildcard-allowed module",
        "suspicious",
    )
    put(
        f"{m}datetime__time_sleep.pkl",
        b"\x80\x04" + _stack_global("datetime", "_time.sleep") + b"K\x05\x85R.",
        "malicious",
        "datetime._time.sleep: dotted name under a wildcard-allowed module",
        "detected",
    )


def _unusual_pickles(put: Callable[..., None], cmd: str) -> None:
    """Pickles a loader runs although they lack STOP or open with an unusual opcode."""
    m = "malicious/unusual/"
    inner = call("posix", "system", cmd, proto=0)
    variants = {
        "first_S": b"S'a'\n0" + inner,
        "first_K": b"K\x010" + inner,
        "first_I": b"I5\n0" + inner,
        "first_V": b"Vx\n0" + inner,
        "first_FRAME": b"\x95" + len(inner).to_bytes(8, "little") + inner,
        "no_stop": b"\x80\x02" + inner[:-1],
    }
    for key, body in variants.items():
        holders = {
            "gz.joblib": gzip.compress(body),
            "bz2.joblib": bz2.compress(body),
            "xz.joblib": lzma.compress(body),
            "zlib.joblib": zlib.compress(body),
            "tar": _tar({"model.bin": body}),
            "zip": _zip({"weights/model.bin": body}),
            "bin": body,
        }
        for ext, data in holders.items():
            put(
                f"{m}{key}.{ext}",
                data,
                "malicious",
                f"{key.replace('_', ' ')} pickle as {ext}",
                "malicious",
            )


def _skops_node(
    module: str, cls: str, loader: str, content: Any, node_id: int = 1
) -> dict[str, Any]:
    return {
        "__class__": cls,
        "__module__": module,
        "__loader__": loader,
        "content": content,
        "__id__": node_id,
    }


def _skops_str(text: str) -> dict[str, Any]:
    return {
        "__class__": "str",
        "__module__": "builtins",
        "__loader__": "JsonNode",
        "content": json.dumps(text),
        "is_json": True,
        "__id__": 7,
    }


def _malicious_skops(put: Callable[..., None], cmd: str, code: str) -> None:
    """skops schemas naming callables that run on load (judged from schema.json alone)."""
    m = "malicious/skops/"
    args = _skops_node("builtins", "tuple", "TupleNode", [_skops_str(code)], 2)
    obj = _skops_node("sklearn.linear_model._logistic", "LogisticRegression", "ObjectNode", {})
    schemas = {
        "reduce_runstring": (
            _skops_node(
                "numpy.testing._private.utils", "runstring", "ConstructorFromReduceNode", args
            ),
            "malicious",
        ),
        "reduce_os_system": (
            _skops_node("os", "system", "ReduceNode", {"args": args}),
            "malicious",
        ),
        "function_exec": (_skops_node("builtins", "exec", "FunctionNode", None), "malicious"),
        "operator_attrgetter": (
            {**_skops_node("operator", "attrgetter", "OperatorFuncNode", None), "attrs": args},
            "malicious",
        ),
        "method_dotted_loads": (
            _skops_node(
                "sklearn.linear_model._logistic",
                "LogisticRegression",
                "MethodNode",
                {"func": "pickle.loads", "obj": obj},
            ),
            "malicious",
        ),
        "object_in_dict": (
            _skops_node(
                "builtins",
                "dict",
                "DictNode",
                {"w": _skops_node("subprocess", "Popen", "ObjectNode", {}, 3)},
            ),
            "malicious",
        ),
        "function_unlisted": (
            _skops_node("sklearn.utils.discovery", "all_estimators", "FunctionNode", None),
            "suspicious",
        ),
    }
    for name, (schema, expect) in schemas.items():
        doc = {**schema, "protocol": 2, "_skops_version": "0.11.0"}
        put(
            f"{m}{name}.skops",
            _zip({"schema.json": json.dumps(doc).encode()}),
            "malicious",
            f"skops schema.json {name.replace('_', ' ')}",
            expect,
        )
    doc = {**_skops_node("os", "system", "FunctionNode", None), "protocol": 2}
    for encoding in ("utf-16", "utf-32-le"):
        put(
            f"{m}schema_{encoding.replace('-', '_')}.skops",
            _zip({"schema.json": json.dumps(doc).encode(encoding)}),
            "malicious",
            f"skops schema.json in {encoding} (json.loads detects it)",
            "malicious",
        )


def _malicious_containers(put: Callable[..., None], cmd: str, code: str) -> None:
    import numpy as np
    import torch

    m = "malicious/container/"
    payload = pickle.dumps(_Reduce(os.system, cmd), protocol=2)
    sd = io.BytesIO()
    torch.save({"w": torch.ones(2)}, sd)
    good = zipfile.ZipFile(io.BytesIO(sd.getvalue()))
    members = {n: good.read(n) for n in good.namelist()}
    pkl_name = next(n for n in members if n.endswith("data.pkl"))
    evil = dict(members)
    evil[pkl_name] = payload
    put(
        f"{m}torch_zip_payload.pt",
        _zip(evil),
        "malicious",
        "torch zip with malicious data.pkl",
        "malicious",
    )
    raw = bytearray(_zip(evil))
    _patch_zip_flags(raw, pkl_name, set_bits=0x1)
    put(
        f"{m}torch_zip_encrypted_flag.pt",
        bytes(raw),
        "malicious",
        "zip 'encrypted' flag on a stored member",
        "malicious",
    )
    raw = bytearray(_zip(evil))
    _patch_zip_crc(raw, pkl_name)
    put(f"{m}torch_zip_bad_crc.pt", bytes(raw), "malicious", "zip with a wrong CRC", "malicious")
    raw = bytearray(_zip(evil))
    _patch_local_name(raw, pkl_name)
    put(
        f"{m}torch_zip_local_name.pt",
        bytes(raw),
        "malicious",
        "local vs central file names differ",
        "malicious",
    )
    other = dict(members)
    other[pkl_name.replace("data.pkl", "data/99")] = payload
    put(
        f"{m}torch_zip_hidden_member.pt",
        _zip(other),
        "malicious",
        "pickle in a member not named .pkl",
        "malicious",
    )
    put(
        f"{m}zip_deflated.zip",
        _zip({"model/weights.bin": payload}, zipfile.ZIP_DEFLATED),
        "malicious",
        "deflated zip member",
        "malicious",
    )
    put(
        f"{m}zip_traversal.zip",
        _zip({"../../evil.txt": b"hi"}),
        "malicious",
        "zip member with ..",
        "malicious",
    )
    put(
        f"{m}tar_traversal.tar",
        _tar({"/etc/evil.txt": b"hi"}),
        "malicious",
        "tar member with absolute path",
        "malicious",
    )
    legacy = io.BytesIO()
    torch.save({"w": torch.ones(2)}, legacy, _use_new_zipfile_serialization=False)
    leg = legacy.getvalue()
    magic_len = len(pickle.dumps(0x1950A86A20F9469CFC6C, protocol=2))
    put(
        f"{m}torch_legacy_payload.pt",
        leg[:magic_len] + payload + leg[magic_len:],
        "malicious",
        "legacy torch magic format with payload",
        "malicious",
    )
    put(
        f"{m}torch_legacy_tar.tar",
        _tar({"sys_info": pickle.dumps({}), "pickle": payload, "storages": b"", "tensors": b""}),
        "malicious",
        "legacy torch tar format",
        "malicious",
    )
    put(f"{m}payload.pkl.gz", gzip.compress(payload), "malicious", "gzip", "malicious")
    put(f"{m}payload.bz2", bz2.compress(payload), "malicious", "bz2", "malicious")
    put(f"{m}payload.xz", lzma.compress(payload), "malicious", "xz", "malicious")
    put(
        f"{m}payload.lzma",
        lzma.compress(payload, format=lzma.FORMAT_ALONE),
        "malicious",
        "lzma alone",
        "malicious",
    )
    put(
        f"{m}payload.zlib",
        zlib.compress(payload),
        "malicious",
        "zlib (joblib compressor)",
        "malicious",
    )
    nested = _tar({"inner.zip": _zip({"deep/model.bin": gzip.compress(payload)})}, "w:gz")
    put(f"{m}nested.tar.gz", nested, "malicious", "tar.gz > zip > gzip > pickle", "malicious")
    import joblib

    buf = io.BytesIO()
    joblib.dump({"model": _Reduce(os.system, cmd), "arr": np.arange(100)}, buf)
    put(
        f"{m}joblib_payload.joblib",
        buf.getvalue(),
        "malicious",
        "joblib with payload after raw array",
        "malicious",
    )
    with io.BytesIO() as buf:
        joblib.dump(
            {"arr": np.arange(50), "model": _Reduce(os.system, cmd)}, buf, compress=("zlib", 3)
        )
        put(
            f"{m}joblib_compressed_payload.joblib",
            buf.getvalue(),
            "malicious",
            "compressed joblib with payload",
            "malicious",
        )
    obj_arr = np.empty(2, dtype=object)
    obj_arr[0] = _Reduce(os.system, cmd)
    buf = io.BytesIO()
    np.save(buf, obj_arr, allow_pickle=True)
    put(f"{m}object_array.npy", buf.getvalue(), "malicious", "npy object dtype", "malicious")
    put(
        f"{m}object_array.npz",
        _zip({"x.npy": buf.getvalue()}),
        "malicious",
        "npz with object array",
        "malicious",
    )
    put(
        f"{m}payload.7z",
        b"7z\xbc\xaf\x27\x1c\x00\x04" + b"\x00" * 24,
        "malicious",
        "7z archive (unscannable)",
        "error",
    )


def _malicious_formats(
    out: Path, put: Callable[..., None], samples: list[Sample], cmd: str, code: str
) -> None:
    m = "malicious/format/"
    lam = {
        "module": "keras.layers",
        "class_name": "Lambda",
        "config": {
            "function": {
                "class_name": "__lambda__",
                "config": {"code": base64.b64encode(code.encode()).decode()},
            }
        },
        "registered_name": None,
    }
    put(
        f"{m}lambda.keras",
        _zip({"config.json": json.dumps(_keras_config(lam)).encode()}),
        "malicious",
        "Keras Lambda layer",
        "malicious",
    )
    ref = {
        "module": "os",
        "class_name": "function",
        "config": "system",
        "registered_name": "system",
    }
    put(
        f"{m}module_ref_config.json",
        json.dumps(
            _keras_config(
                {
                    "module": "keras.layers",
                    "class_name": "Activation",
                    "config": {"activation": ref},
                    "registered_name": None,
                }
            )
        ).encode(),
        "malicious",
        "Keras module reference outside keras",
        "malicious",
    )
    _h5(out / f"{m}lambda.h5", _keras_config(lam))
    samples.append(
        Sample(f"{m}lambda.h5", "malicious", "Keras .h5 Lambda in model_config", "malicious")
    )
    (out / f"{m}onnx_traversal").mkdir(parents=True, exist_ok=True)
    put(
        f"{m}onnx_traversal/model.onnx",
        _onnx_model("../../../etc/passwd"),
        "malicious",
        "ONNX external data traversal",
        "malicious",
    )
    put(
        f"{m}onnx_absolute/model.onnx",
        _onnx_model("/etc/passwd"),
        "malicious",
        "ONNX external data absolute path",
        "malicious",
    )
    link_dir = out / f"{m}onnx_symlink"
    link_dir.mkdir(parents=True, exist_ok=True)
    if not (link_dir / "weights.bin").is_symlink():
        (link_dir / "weights.bin").symlink_to("/etc/hostname")
    put(
        f"{m}onnx_symlink/model.onnx",
        _onnx_model("weights.bin"),
        "malicious",
        "ONNX external data symlink",
        "malicious",
    )
    put(
        f"{m}onnx_custom_domain.onnx",
        _onnx_model(domain="com.evil"),
        "malicious",
        "ONNX custom op domain",
        "suspicious",
    )
    ssti = "{{ cycler.__init__.__globals__.os.popen('" + cmd + "').read() }}"
    put(
        f"{m}tokenizer_config.json",
        json.dumps({"chat_template": ssti}).encode(),
        "malicious",
        "chat template injection",
        "malicious",
    )
    attr = "{{ ''|attr('__cla' ~ 'ss__') }}{% for m in messages %}{{ m['content'] }}{% endfor %}"
    put(
        f"{m}tokenizer_attr_config.json",
        json.dumps({"chat_template": [{"name": "default", "template": attr}]}).encode(),
        "malicious",
        "chat template |attr computed name",
        "malicious",
    )
    put(
        f"{m}template.gguf",
        _gguf({"tokenizer.chat_template": ssti}),
        "malicious",
        "GGUF chat template injection",
        "malicious",
    )
    header = json.dumps(
        {
            "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
            "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
        }
    ).encode()
    put(
        f"{m}overlap.safetensors",
        struct.pack("<Q", len(header)) + header + b"\x00" * 12,
        "malicious",
        "safetensors overlapping tensors",
        "suspicious",
    )
    entry = b'{"dtype": "F32", "shape": [1], "data_offsets": [0, 4]}'
    header = b'{"a": ' + entry + b', "a": ' + entry + b"}"
    put(
        f"{m}duplicate.safetensors",
        struct.pack("<Q", len(header)) + header + b"\x00" * 4 + call("os", "system", cmd),
        "malicious",
        "safetensors duplicate keys + trailing bytes",
        "suspicious",
    )


def _patch_zip_flags(raw: bytearray, name: str, set_bits: int) -> None:
    for sig, flag_off, name_off in ((b"PK\x03\x04", 6, 30), (b"PK\x01\x02", 8, 46)):
        pos = raw.find(sig)
        while pos >= 0:
            nlen = struct.unpack_from("<H", raw, pos + (26 if sig == b"PK\x03\x04" else 28))[0]
            if bytes(raw[pos + name_off : pos + name_off + nlen]).decode() == name:
                flags = struct.unpack_from("<H", raw, pos + flag_off)[0]
                struct.pack_into("<H", raw, pos + flag_off, flags | set_bits)
            pos = raw.find(sig, pos + 4)


def _patch_zip_crc(raw: bytearray, name: str) -> None:
    for sig, crc_off in ((b"PK\x03\x04", 14), (b"PK\x01\x02", 16)):
        pos = raw.find(sig)
        while pos >= 0:
            struct.pack_into("<I", raw, pos + crc_off, 0xDEADBEEF)
            pos = raw.find(sig, pos + 4)


def _patch_local_name(raw: bytearray, name: str) -> None:
    """Rename the local header only (same length), so central and local names disagree."""
    pos = raw.find(name.encode())
    decoy = name[:-8] + "zata.pkl"
    raw[pos : pos + len(name)] = decoy.encode()


def main() -> None:
    target = Path(sys.argv[1] if len(sys.argv) > 1 else "scan-corpus")
    samples = build(target)
    (target / "manifest.json").write_text(json.dumps([s.__dict__ for s in samples], indent=1))
    print(f"{len(samples)} samples in {target}")


if __name__ == "__main__":
    main()
