"""Helpers shared by the integrity tests (keys by algorithm, small model directories)."""

from __future__ import annotations

import random
from pathlib import Path

from bastion.integrity import keys

ALGORITHMS = ("ecdsa-p256", "ed25519", "ml-dsa-65", "hybrid")
SHARD = 4096  # small shards so test models have several


def private(keydir: Path, algorithm: str) -> keys.PrivateKey:
    return keys.load_private_key(keydir / algorithm / "private.pem", None)


def public(keydir: Path, algorithm: str) -> keys.PublicKey:
    return keys.load_public_key(keydir / algorithm / "public.pem")


def make_model(root: Path, seed: int = 0) -> Path:
    """A small model directory: two weight files (one spans several shards), JSON, an empty file."""
    rng = random.Random(seed)
    model = root / f"model{seed}"
    (model / "sub").mkdir(parents=True)
    (model / "weights.bin").write_bytes(rng.randbytes(10_000))
    (model / "sub" / "layer.bin").write_bytes(rng.randbytes(3_000))
    (model / "config.json").write_text('{"layers": 2}')
    (model / "empty").write_bytes(b"")
    return model
