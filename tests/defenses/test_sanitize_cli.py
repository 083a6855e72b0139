"""`bastion sanitize` and `bastion watermark` from the command line: files, exit codes, errors."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from bastion.attacks.poisoning import flip_labels_random
from bastion.cli.main import main
from bastion.zoo import entry


def run(args: list[str]) -> int:
    with pytest.raises(SystemExit) as exc:
        main(args)
    return int(exc.value.code or 0)


def test_sanitize_knn_writes_cleaned_data_and_exits_1(tmp_path: Path, bastion_home, capsys) -> None:
    train, _ = entry("digits-cnn").load_data()
    flipped = flip_labels_random(train, 0.1, 10, seed=0)
    data = tmp_path / "train.npz"
    np.savez(data, x=flipped.dataset.x, y=flipped.dataset.labels)
    report = tmp_path / "suspects.json"
    code = run(["sanitize", str(data), "--method", "knn", "--report", str(report)])
    assert code == 1
    assert "suspect rows found" in capsys.readouterr().err
    suspects = {s["index"] for s in json.loads(report.read_text())["suspects"]}
    assert len(suspects & set(flipped.poison_index.tolist())) >= 0.9 * len(flipped.poison_index)
    with np.load(tmp_path / "train.clean.npz") as cleaned:
        assert len(cleaned["x"]) == len(train) - len(suspects)


def test_sanitize_refuses_unlabelled_data(tmp_path: Path, bastion_home, capsys) -> None:
    data = tmp_path / "nolabels.npz"
    np.savez(data, x=np.zeros((10, 1, 8, 8), np.float32))
    assert run(["sanitize", str(data), "--method", "knn"]) == 2
    assert "has no labels" in capsys.readouterr().err
    assert not (tmp_path / "nolabels.clean.npz").exists()


def test_sanitize_activation_needs_a_model(tmp_path: Path, bastion_home, capsys) -> None:
    train, _ = entry("digits-cnn").load_data()
    data = tmp_path / "train.npz"
    np.savez(data, x=train.x[:100], y=train.labels[:100])
    assert run(["sanitize", str(data), "--method", "activation"]) == 2
    assert "--model" in capsys.readouterr().err


def test_watermark_short_key_and_missing_key(tmp_path: Path, bastion_home, capsys) -> None:
    short = tmp_path / "short.key"
    short.write_bytes(b"12345678")
    assert run(["watermark", "verify", "builtin:digits-mlp", "--key-file", str(short)]) == 2
    assert "at least 16" in capsys.readouterr().err
    assert (
        run(["watermark", "verify", "builtin:digits-mlp", "--key-file", str(tmp_path / "no")]) == 2
    )


def test_watermark_verify_unmarked_model_exits_1(tmp_path: Path, bastion_home, capsys) -> None:
    key = tmp_path / "wm.key"
    key.write_bytes(bytes(range(32)))
    code = run(
        ["watermark", "verify", "builtin:digits-mlp", "--key-file", str(key), "--format", "json"]
    )
    assert code == 1
    verdict = json.loads(capsys.readouterr().out)
    assert verdict["verified"] is False and verdict["p_value"] > 0.01


def test_watermark_embed_appends_ownership_record_to_audit_log(
    tmp_path: Path, bastion_home: Path
) -> None:
    from bastion.audit import open_log
    from bastion.defenses.watermark import opens_commitment

    key = tmp_path / "wm.key"
    key.write_bytes(bytes(range(32)))
    out = tmp_path / "marked.safetensors"
    log_path = tmp_path / "audit.sqlite3"
    args = ["watermark", "embed", "builtin:digits-mlp", "--key-file", str(key)]
    code = run([*args, "--out", str(out), "--epochs", "1", "--audit-log", str(log_path)])
    assert code == 0 and out.exists()
    record = json.loads((tmp_path / "marked.safetensors.watermark.json").read_text())
    assert opens_commitment(record, bytes(range(32)))
    with open_log(log_path, state_dir=bastion_home) as log:
        stored = log.record(record["audit_index"])
        assert stored["commitment"] == record["commitment"]
        assert log.latest_checkpoint() is not None and log.verify().ok
