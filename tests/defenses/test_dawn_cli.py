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


def test_verify_clone_proves_a_suspect_that_gives_the_watermark_labels(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # recorded pairs of a served model that answers the opposite of cancer-logreg: the builtin
    # model then "learned" every watermark answer and agrees with every control answer
    monkeypatch.setenv("BASTION_HOME", str(tmp_path / "home"))
    import json

    model = load_model("builtin:cancer-logreg")
    x = np.random.default_rng(0).normal(size=(600, 30)).astype(np.float32) * 50 + 100
    ours = model.predict_proba(x).argmax(axis=1)
    lines = [
        {"model": "m", "kind": kind, "label": int(y), "victim": int(1 - y if wm else y)}
        | {"x": row.tolist()}
        for i, (row, y) in enumerate(zip(x, ours, strict=True))
        for wm, kind in [(i < 40, "watermark" if i < 40 else "control")]
    ]
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines))
    argv = ["watermark", "verify-clone", "builtin:cancer-logreg", "--pairs", str(pairs)]
    assert run([*argv, "--format", "json"]) == 0
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["proven"] and verdict["matches"] == 40 and verdict["controls"] == 560
    assert verdict["log2_p_value"] < -40
    # the same answers with too few controls to tell a clone from a model that disagrees
    pairs.write_text("".join(json.dumps(line) + "\n" for line in lines[:45]))
    assert run(argv) == 1
