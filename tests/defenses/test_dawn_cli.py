"""`bastion watermark verify-clone`: exit 1 when not proven, 2 on bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main
from bastion.core.loading import load_model
from bastion.defenses.dawn import PairLog, ResponseWatermark


def run(argv: list[str]) -> int:
    with pytest.raises(SystemExit) as done:
        main(argv)
    return int(done.value.code or 0)


def test_verify_clone_exit_codes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    model = load_model("builtin:cancer-logreg")
    x = np.random.default_rng(0).normal(size=(20000, 30)).astype(np.float32) * 50 + 100
    _, marked = ResponseWatermark(b"k" * 32, 0.004).apply(x, model.predict_proba(x))
    pairs = tmp_path / "pairs.jsonl"
    PairLog(pairs).append(x, marked, "cancer")
    # the served model itself never answers the watermark labels: not a proven copy
    assert run(["watermark", "verify-clone", "builtin:cancer-logreg", "--pairs", str(pairs)]) == 1
    assert (
        run(
            [
                "watermark",
                "verify-clone",
                "builtin:cancer-logreg",
                "--pairs",
                str(tmp_path / "none.jsonl"),
            ]
        )
        == 2
    )
    pairs.write_text("not json\n")
    assert run(["watermark", "verify-clone", "builtin:cancer-logreg", "--pairs", str(pairs)]) == 2
