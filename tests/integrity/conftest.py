"""Shared fixtures: one key pair per algorithm (made once) and small model directories."""

from __future__ import annotations

from pathlib import Path

import pytest
from integrity_helpers import ALGORITHMS

from bastion.integrity import keys


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("BASTION_PASSPHRASE", raising=False)


@pytest.fixture(scope="session")
def keydir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`<alg>/private.pem` (unencrypted) and `<alg>/public.pem` for every algorithm."""
    root = tmp_path_factory.mktemp("keys")
    for algorithm in (*ALGORITHMS, "x25519-mlkem768"):
        keys.write_keypair(keys.generate(algorithm), root / algorithm, None)
    keys.write_keypair(keys.generate("ecdsa-p256"), root / "other-ecdsa", None)
    keys.write_keypair(keys.generate("ed25519"), root / "other-ed25519", None)
    return root
