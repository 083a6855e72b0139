"""`bastion scan`: exit codes, JSON and SARIF output, allowlists, bad input."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
from corpus import call

from bastion.cli.main import main


def run(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(args)
    out = capsys.readouterr()
    return int(exc.value.code or 0), out.out, out.err


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    (tmp_path / "ok").mkdir()
    (tmp_path / "ok" / "a.pkl").write_bytes(pickle.dumps({"w": [1.0, 2.0]}))
    (tmp_path / "ok" / "notes.txt").write_text("hello")
    (tmp_path / "bad").mkdir()
    (tmp_path / "bad" / "weights.bin").write_bytes(call("os", "system", "true"))
    (tmp_path / "custom.pkl").write_bytes(call("mypkg.nets", "Net"))
    return tmp_path


def test_exit_0_when_every_file_is_safe(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["scan", str(tree / "ok")], capsys)
    assert code == 0 and "2 files: 2 safe" in out


def test_exit_1_and_json_shape_when_something_is_found(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["scan", str(tree), "--format", "json"], capsys)
    assert code == 1
    doc = json.loads(out)
    files = {Path(f["path"]).name: f for f in doc["files"]}
    assert set(files) == {"a.pkl", "notes.txt", "weights.bin", "custom.pkl"}
    bad = files["weights.bin"]
    assert bad["verdict"] == "malicious" and bad["format"] == "pickle"
    assert set(bad["findings"][0]) == {"rule", "severity", "message", "location", "global"}
    assert bad["findings"][0]["global"] == "os.system"
    assert bad["imports"] == {"os.system": 1}  # every import, with its call sites
    assert files["custom.pkl"]["verdict"] == "suspicious"


def test_exit_2_when_a_file_cannot_be_scanned(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tree / "ok" / "empty.pt").write_bytes(b"")
    code, _, _ = run(["scan", str(tree / "ok")], capsys)
    assert code == 2
    code, _, _ = run(["scan", str(tree / "missing.pt")], capsys)
    assert code == 2


def test_sarif_output_is_2_1_0_with_rules_and_results(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(["scan", str(tree / "bad"), "--format", "sarif"], capsys)
    doc = json.loads(out)
    assert code == 1 and doc["version"] == "2.1.0"
    run_ = doc["runs"][0]
    assert run_["tool"]["driver"]["name"] == "bastion-scan"
    assert {r["id"] for r in run_["tool"]["driver"]["rules"]} >= {"pickle.import.denied"}
    assert run_["results"][0]["level"] == "error"
    assert run_["results"][0]["locations"][0]["physicalLocation"]["artifactLocation"][
        "uri"
    ].endswith("weights.bin")


def test_allow_and_allowlist_file_extend_the_allowlist(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run(["scan", str(tree / "custom.pkl"), "--allow", "mypkg.nets:Net"], capsys)[0] == 0
    listing = tree / "allow.toml"
    listing.write_text('[allow]\nglobals = ["mypkg.*:*"]\n')
    assert run(["scan", str(tree / "custom.pkl"), "--allowlist", str(listing)], capsys)[0] == 0
    assert (
        run(["scan", str(tree / "custom.pkl"), "--policy", "strict", "--format", "json"], capsys)[0]
        == 1
    )


def test_output_file_is_written(tree: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tree / "out" / "report.json"
    code, _, _ = run(["scan", str(tree / "ok"), "--format", "json", "-o", str(target)], capsys)
    assert code == 0 and json.loads(target.read_text())["safe"] is True


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--format", "xml"], "unknown format"),
        (["--policy", "lax"], "unknown scan policy"),
        (["--allow", "nocolon"], "not MODULE:NAME"),
    ],
)
def test_bad_options_are_usage_errors(
    tree: Path, capsys: pytest.CaptureFixture[str], args: list[str], needle: str
) -> None:
    code, _, err = run(["scan", str(tree / "ok"), *args], capsys)
    assert code == 2 and needle in err and "fix:" in err


def test_bad_allowlist_file_names_the_problem(
    tree: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tree / "allow.toml"
    bad.write_text("[allow\n")
    code, _, err = run(["scan", str(tree / "ok"), "--allowlist", str(bad)], capsys)
    assert code == 2 and "not valid TOML" in err
