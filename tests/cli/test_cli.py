"""The CLI: start-up, exit codes from the shared table, bad input, atomic reports."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from bastion.cli.main import main

BASTION = [sys.executable, "-m", "bastion"]


def run(*args: str) -> int:
    with pytest.raises(SystemExit) as info:
        main(list(args))
    return int(info.value.code or 0)


def test_version_via_python_m() -> None:
    result = subprocess.run([*BASTION, "--version"], capture_output=True, text=True, check=True)
    assert result.stdout.startswith("bastion ")


def test_cli_import_pulls_no_torch() -> None:
    code = (
        "import sys, bastion.cli.main, bastion; assert 'torch' not in sys.modules, 'torch imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_assess_writes_report_and_exits_zero(tmp_path: Path) -> None:
    out = tmp_path / "report"
    assert run("assess", "builtin:cancer-logreg", "--checks", "baseline", "--out", str(out)) == 0
    doc = json.loads((out / "report.json").read_text())
    assert doc["model"]["spec"] == "builtin:cancer-logreg"


def test_fail_on_gate_exits_three(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "report"
    assert (
        run(
            "assess",
            "builtin:cancer-logreg",
            "--checks",
            "baseline",
            "--fail-on",
            "info",
            "--out",
            str(out),
        )
        == 3
    )
    assert (out / "report.json").exists(), "the report is written before the gate trips"
    assert (
        run(
            "assess",
            "builtin:cancer-logreg",
            "--checks",
            "baseline",
            "--fail-on",
            "critical",
            "--out",
            str(out),
        )
        == 0
    )


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["assess", "builtin:nope"], "no built-in model named"),
        (["assess", "builtin:cancer-logreg", "--checks", "nonsense"], "unknown check"),
        (["assess", "builtin:cancer-logreg", "--budget", "huge"], "unknown budget"),
        (["assess", "builtin:cancer-logreg", "--fail-on", "severe"], "unknown severity"),
        (["assess", "model.pkl"], "no model at"),
        (["report"], ""),
        (["assess"], "Missing argument"),
    ],
)
def test_usage_errors_exit_two(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(*args) == 2
    assert message in capsys.readouterr().err


def test_pickle_model_refused_with_fix(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "model.pkl"
    path.write_bytes(b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N.")
    assert run("assess", str(path), "--data", str(path)) == 2
    err = capsys.readouterr().err
    assert "pickle-based" in err and "fix: convert it to safetensors" in err


def _onnx_model(tmp_path: Path) -> Path:
    from bastion.core.adapters.onnx import export_torch
    from bastion.zoo import build

    path = tmp_path / "digits.onnx"
    export_torch(build("digits-cnn"), path)
    return path


@pytest.mark.parametrize(
    ("make_data", "message"),
    [
        (lambda: {"x": np.zeros((5, 3)), "y": np.zeros(5)}, "the model expects"),
        (lambda: {"x": np.full((2, 64), np.nan), "y": np.zeros(2)}, "NaN"),
        (lambda: {"x": np.zeros((2, 64))}, "has no labels"),
        (lambda: {"x": np.zeros((2, 64)), "y": np.array([0, 12])}, "labels span"),
    ],
)
def test_bad_data_exits_two_without_report(
    tmp_path: Path, make_data: object, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    model = _onnx_model(tmp_path)
    data = tmp_path / "data.npz"
    np.savez(data, **make_data())  # type: ignore[operator]
    out = tmp_path / "report"
    assert run("assess", str(model), "--data", str(data), "--out", str(out)) == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_flat_csv_rows_feed_an_image_model(tmp_path: Path) -> None:
    from bastion.zoo import entry

    _, test = entry("digits-cnn").load_data()
    data = tmp_path / "digits.csv"
    rows = np.column_stack([test.x.reshape(len(test), -1), test.labels])
    header = ",".join([f"p{i}" for i in range(64)] + ["label"])
    np.savetxt(data, rows, delimiter=",", header=header, comments="")
    out = tmp_path / "report"
    assert (
        run(
            "assess",
            str(_onnx_model(tmp_path)),
            "--data",
            str(data),
            "--checks",
            "baseline",
            "--out",
            str(out),
        )
        == 0
    )
    acc = next(
        f
        for f in json.loads((out / "report.json").read_text())["findings"]
        if f["id"] == "baseline.accuracy"
    )
    assert acc["value"] >= 0.97


def test_logit_model_declared_as_probabilities_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An ONNX file that returns raw logits is caught by the probability check."""
    import io

    import torch

    from bastion.zoo import build

    module = build("digits-cnn").module
    buf = io.BytesIO()
    torch.onnx.export(
        module,
        (torch.zeros(1, 1, 8, 8),),
        buf,
        input_names=["x"],
        dynamo=False,
        dynamic_axes={"x": {0: "n"}},
    )
    model = tmp_path / "logits.onnx"
    model.write_bytes(buf.getvalue())
    data = tmp_path / "d.npz"
    np.savez(data, x=np.random.default_rng(0).random((8, 1, 8, 8)), y=np.zeros(8, dtype=int))
    assert run("assess", str(model), "--data", str(data), "--out", str(tmp_path / "r")) == 2
    err = capsys.readouterr().err
    assert "negative probabilities" in err or "sum to" in err


def test_unwritable_output_keeps_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    assert (
        run(
            "assess",
            "builtin:cancer-logreg",
            "--checks",
            "baseline",
            "--out",
            str(blocker / "report"),
        )
        == 2
    )
    assert "cannot create" in capsys.readouterr().err


def test_report_schema_command(capsys: pytest.CaptureFixture[str]) -> None:
    assert run("report", "schema") == 0
    assert json.loads(capsys.readouterr().out)["title"] == "Bastion assessment report"


def test_hot_commands_start_without_typer(tmp_path: Path) -> None:
    """The console script runs scan, sign and verify without importing Typer, rich or pydantic."""
    import zipfile

    model = tmp_path / "model.pt"  # a zip: the archive and format modules are imported too
    with zipfile.ZipFile(model, "w") as archive:
        archive.writestr("model/data.pkl", b"\x80\x04\x95\x05\x00\x00\x00\x00\x00\x00\x00N.")
    code = (
        "import sys\n"
        "from bastion.cli.entry import main\n"
        "try:\n"
        f"    main(['scan', {str(model)!r}, '--format', 'json'])\n"
        "except SystemExit as exc:\n"
        "    assert exc.code == 0, exc.code\n"
        "heavy = {'typer', 'click', 'rich', 'pydantic'} & {m.split('.')[0] for m in sys.modules}\n"
        "assert not heavy, heavy\n"
        "# each of these costs `bastion scan` milliseconds; the scan path does without them\n"
        "slow = {'typing', 'pathlib', 'dataclasses', 'inspect', 'tomllib'} & set(sys.modules)\n"
        "assert not slow, slow\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def _entry(*args: str) -> int:
    from bastion.cli.entry import main as entry_main

    with pytest.raises(SystemExit) as info:
        entry_main(list(args))
    return int(info.value.code or 0)


@pytest.mark.parametrize("command", ["scan", "sign", "verify"])
def test_hot_commands_are_listed_and_have_help(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _entry("--help") == 0
    assert f" {command} " in capsys.readouterr().out
    for runner in (_entry, run):  # the console script and the Typer app reach the same parser
        assert runner(command, "--help") == 0
        assert f"usage: bastion {command}" in capsys.readouterr().out


def test_hot_commands_keep_exit_codes_through_both_paths(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    for runner in (_entry, run):
        assert runner("scan", str(bad)) == 1
        assert "MALICIOUS" in capsys.readouterr().out
        assert runner("scan", str(bad), "--format", "xml") == 2
        assert "fix:" in capsys.readouterr().err
        assert runner("scan") == 2  # no path: a usage error
        assert runner("verify", str(tmp_path), "--key", str(tmp_path / "none.pem")) == 2
        assert "error:" in capsys.readouterr().err


def test_python_m_bastion_runs_hot_commands(tmp_path: Path) -> None:
    bad = tmp_path / "bad.pkl"
    bad.write_bytes(b"cos\nsystem\n(S'true'\ntR.")
    result = subprocess.run([*BASTION, "scan", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "MALICIOUS" in result.stdout
