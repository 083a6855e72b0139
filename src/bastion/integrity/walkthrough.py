"""The artifact part of `bastion demo`: sign a model file, load it through the trusted loader,
and show that one flipped byte fails verification."""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from bastion.core.model import Model
from bastion.integrity import keys
from bastion.integrity.loader import load_trusted
from bastion.integrity.scan import scan
from bastion.integrity.signing import ModelMismatchError, sign_model, verify_model


@dataclass(frozen=True)
class ArtifactCheck:
    """What the walkthrough did and saw."""

    file: str
    size: int
    algorithm: str
    scan_verdict: str
    model: Model  # loaded through the trusted loader (verify, scan, safe loader)
    tamper_caught: str  # the verifier's message for the copy with one byte flipped


def check_artifact(model_file: Path, workdir: Path) -> ArtifactCheck:
    """Sign a copy of `model_file` in `workdir` with a fresh Ed25519 key, load it through the
    trusted loader, then flip one byte of a second signed copy and verify that."""
    key = keys.generate("ed25519")
    trusted = workdir / "trusted" / model_file.name
    trusted.parent.mkdir(parents=True)
    shutil.copyfile(model_file, trusted)
    signed = sign_model(trusted, key)
    model = load_trusted(trusted, [key.public()])

    tampered = workdir / "tampered" / model_file.name
    tampered.parent.mkdir()
    shutil.copyfile(trusted, tampered)
    shutil.copyfile(signed.signature, tampered.with_name(signed.signature.name))
    data = bytearray(tampered.read_bytes())
    data[len(data) // 2] ^= 0x01
    tampered.write_bytes(bytes(data))
    try:
        verify_model(tampered, [key.public()])
        caught = ""
    except ModelMismatchError as exc:
        caught = str(exc)
    return ArtifactCheck(
        file=model_file.name,
        size=model_file.stat().st_size,
        algorithm=signed.algorithm,
        scan_verdict=scan(trusted).verdict,
        model=model,
        tamper_caught=caught,
    )
