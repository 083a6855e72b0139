"""Trusted loading: verify the signature, decrypt in memory, scan, then load safely.

Only safe loaders run: safetensors, skops with a trusted-types list, ONNX, and
`torch.load(weights_only=True)` for PyTorch state dicts. Nothing falls back to an
unsafe loader after a safe one fails, and `TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD` is
ignored (`weights_only=True` is always passed explicitly).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from bastion.core.errors import InputError, SecurityError, UnsafeFormatError, UsageError
from bastion.core.model import Model
from bastion.integrity import crypt, signing
from bastion.integrity.keys import PublicKey, load_private_key, load_public_key

TORCH_SUFFIXES = (".pt", ".pth")
MODEL_SUFFIXES = (".safetensors", ".skops", ".onnx", *TORCH_SUFFIXES)
SAFE_TARGETS = "safetensors (torch), skops (scikit-learn) or ONNX"


class UnsafeModelError(SecurityError):
    """The scanner found something other than safe content."""


def run_scanner(path: Path) -> None:
    """The scan hook: refuse `path` unless the scanner calls every file safe."""
    try:
        from bastion.integrity.scan import scan
    except ImportError as exc:
        raise ImportError(
            "trusted loading scans models but bastion.integrity.scan is not available; "
            "pass scan=False only if another step already scanned this model"
        ) from exc
    report = scan(path)
    if not report.safe:
        flagged = [
            f"{Path(f.path).name} ({f.verdict})" for f in report.files if f.verdict != "safe"
        ]
        raise UnsafeModelError(
            f"the scanner did not find {path.name} safe: "
            f"{', '.join(flagged[:3]) or 'nothing was scanned'}",
            fix=f"run `bastion scan {path}` for details; re-export the model as {SAFE_TARGETS}",
        )


def _trusted(keys: Sequence[PublicKey | str | Path]) -> list[PublicKey]:
    return [k if isinstance(k, PublicKey) else load_public_key(k) for k in keys]


def _unwrappers(
    key: crypt.KeyWrapper | str | Path, passphrase: bytes | None
) -> list[crypt.KeyWrapper]:
    if isinstance(key, str | Path):
        env = os.environ.get("BASTION_PASSPHRASE")
        private = load_private_key(key, passphrase or (env.encode() if env else None))
        return [crypt.RecipientWrapper.for_private(private)]
    return [key]


@contextlib.contextmanager
def _private_dir() -> Iterator[Path]:
    """A 0700 scratch directory, in RAM (/dev/shm) when the system has one."""
    shm = Path("/dev/shm")
    base = str(shm) if shm.is_dir() and os.access(shm, os.W_OK) else None
    with tempfile.TemporaryDirectory(prefix="bastion-load-", dir=base) as tmp:
        os.chmod(tmp, 0o700)
        yield Path(tmp)


def _model_file(path: Path) -> Path:
    if not path.is_dir():
        return path
    found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in MODEL_SUFFIXES)
    if len(found) != 1:
        raise InputError(
            f"{path} holds {len(found)} model files; expected exactly one",
            fix=f"pass the model file, or keep one {'/'.join(MODEL_SUFFIXES)} file in it",
        )
    return found[0]


def load_trusted(
    path: str | Path,
    trusted_keys: Sequence[PublicKey | str | Path] | None = None,
    decryption_key: crypt.KeyWrapper | str | Path | None = None,
    *,
    signature: str | Path | None = None,
    passphrase: bytes | None = None,
    scan: bool = True,
) -> Model:
    """Verify (if keys are given), decrypt (if encrypted), scan, then load through a safe loader.

    `decryption_key` is a recipient private key file (its passphrase from `passphrase`
    or `BASTION_PASSPHRASE`) or any `KeyWrapper` (a passphrase or a KMS wrapper).
    """
    source = Path(path)
    with _private_dir() as tmp:
        if trusted_keys is not None:
            # verify a private copy, so the bytes loaded are the bytes verified
            sig = Path(signature) if signature else signing.default_signature_path(source)
            source, sig = _stage(source, sig, tmp / "staged")
            signing.verify_model(source, _trusted(trusted_keys), sig)
        encrypted = crypt.is_encrypted(source)
        if encrypted and decryption_key is None:
            raise UsageError(
                f"{source.name} is encrypted",
                fix="pass decryption_key=PRIVATE_KEY_PATH or a KeyWrapper",
            )
        if decryption_key is not None and not encrypted:
            raise SecurityError(
                f"{source.name} was expected to be encrypted but is not",
                fix="check that the file was not replaced; drop decryption_key if this is intended",
            )
        if encrypted:
            plain = tmp / "plain" / (source.name.removesuffix(".enc") or "model")
            plain.parent.mkdir()
            crypt.decrypt_path(source, plain, _unwrappers(decryption_key, passphrase))  # type: ignore[arg-type]
            source = plain
        if scan:
            run_scanner(source)
        return load_safe(_model_file(source))


def _stage(model: Path, sig: Path, into: Path) -> tuple[Path, Path]:
    """Copy the model (symlinks kept as links, so verification refuses them) and its signature."""
    into.mkdir()
    staged, staged_sig = into / (model.name or "model"), into / "signature.bundle"
    try:
        if model.is_dir() and not model.is_symlink():
            shutil.copytree(model, staged, symlinks=True)
        elif model.exists():
            shutil.copy2(model, staged, follow_symlinks=False)
        if sig.exists():
            shutil.copyfile(sig, staged_sig)
    except (OSError, shutil.Error) as exc:
        raise InputError(
            f"cannot read {model}: {exc}", fix="pass a model of regular files"
        ) from exc
    return (
        staged if staged.exists() or staged.is_symlink() else model
    ), staged_sig if sig.exists() else sig


def load_safe(path: Path) -> Model:
    """Load one file through the safe loader its content calls for; never fall back."""
    from bastion.core.loading import load_file, sniff_format

    fmt = sniff_format(path)
    if fmt == "pickle" and path.suffix.lower() in TORCH_SUFFIXES and zipfile.is_zipfile(path):
        return _load_torch_state(path)
    if fmt in ("safetensors", "skops", "onnx"):
        return load_file(path)
    raise UnsafeFormatError(
        f"refusing to load {path.name}: {fmt} files have no safe loader",
        fix=f"convert it to {SAFE_TARGETS}",
    )


def _load_torch_state(path: Path) -> Model:
    """A PyTorch state dict read with `weights_only=True`, built from a JSON layer spec sidecar."""
    import torch

    from bastion.core.adapters.torch import TorchModel
    from bastion.core.adapters.torch_file import build_sequential

    spec = _torch_spec(path)
    try:
        state = torch.load(io.BytesIO(path.read_bytes()), weights_only=True, map_location="cpu")
    except Exception as exc:  # the weights-only unpickler raises UnpicklingError and others
        raise UnsafeFormatError(
            f"refusing to load {path.name}: it is not a plain weights file ({type(exc).__name__})",
            fix=f"convert it to {SAFE_TARGETS}",
        ) from exc
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise UnsafeFormatError(
            f"{path.name} is not a state dict of tensors", fix="save module.state_dict()"
        )
    module = build_sequential(spec["layers"])
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"{path.name} does not match its layer spec: {exc}", fix="re-export the model"
        ) from exc
    bounds = spec.get("input_bounds")
    return TorchModel(
        module,
        input_shape=tuple(spec["input_shape"]),
        n_classes=int(spec["n_classes"]),
        input_bounds=tuple(bounds) if bounds is not None else None,
        class_names=spec.get("class_names"),
    )


def _torch_spec(path: Path) -> dict[str, Any]:
    side = path.with_name(path.name + ".json")
    try:
        spec = json.loads(side.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise InputError(
            f"{path.name} needs its architecture in {side.name}",
            fix="write the layer spec beside it, or save the model as safetensors with bastion",
        ) from exc
    except ValueError as exc:
        raise InputError(f"{side.name} is not valid JSON", fix="repair it") from exc
    if not isinstance(spec, dict) or not {"layers", "input_shape", "n_classes"} <= spec.keys():
        raise InputError(
            f"{side.name} lacks layers, input_shape or n_classes", fix="complete the spec"
        )
    return spec
