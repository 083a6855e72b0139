"""The artifact walkthrough of `bastion demo`: sign, trusted load, and a flipped byte caught."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bastion.core.loading import load_file
from bastion.integrity.walkthrough import check_artifact
from bastion.zoo import build
from bastion.zoo.data import cancer
from bastion.zoo.registry import model_path


def test_walkthrough_loads_the_signed_model_and_catches_a_flipped_byte(tmp_path: Path) -> None:
    build("cancer-logreg")
    source = model_path("cancer-logreg")
    seen = check_artifact(source, tmp_path)
    assert seen.algorithm == "ed25519" and seen.scan_verdict == "safe"
    assert seen.file == source.name and seen.size == source.stat().st_size
    x = cancer()[1].x[:20]
    assert np.array_equal(seen.model.predict_proba(x), load_file(source).predict_proba(x))
    assert f"changed: {source.name}" in seen.tamper_caught
    assert source.read_bytes() == (tmp_path / "trusted" / source.name).read_bytes()
