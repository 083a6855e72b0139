"""Configuration loading and atomic writes."""

from __future__ import annotations

from pathlib import Path

import pytest

from bastion.core.config import AssessConfig, Section, load_config
from bastion.core.errors import ConfigError, OutputPathError
from bastion.core.fs import atomic_directory, atomic_file


def test_toml_then_environment_override(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text('[assess]\nbudget = "quick"\nseed = 3\n')
    config = load_config(path, environ={"BASTION_ASSESS__SEED": "11"})
    assert config.assess.budget == "quick" and config.assess.seed == 11


def test_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "bastion.toml"
    path.write_text("[assess]\nbugdet = 'quick'\n")
    with pytest.raises(ConfigError, match=r"assess\.bugdet"):
        load_config(path, environ={})


def test_invalid_value_and_syntax(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"assess\.budget"):
        load_config(environ={"BASTION_ASSESS__BUDGET": "infinite"})
    path = tmp_path / "bad.toml"
    path.write_text("[assess\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(path, environ={})


def test_each_schema_sees_only_its_sections() -> None:
    class ServeConfig(Section):
        assess: AssessConfig = AssessConfig()

    env = {"BASTION_ASSESS__SEED": "4", "BASTION_GATEWAY__PORT": "1", "BASTION_HOME": "/x"}
    assert load_config(environ=env, schema=ServeConfig).assess.seed == 4


def test_atomic_file_leaves_nothing_on_failure(tmp_path: Path) -> None:
    target = tmp_path / "out.bin"
    with pytest.raises(RuntimeError), atomic_file(target) as handle:
        handle.write(b"partial")  # type: ignore[attr-defined]
        raise RuntimeError("interrupted")
    assert list(tmp_path.iterdir()) == []


def test_atomic_directory_replaces_only_on_success(tmp_path: Path) -> None:
    target = tmp_path / "report"
    with atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("first")
    with pytest.raises(RuntimeError), atomic_directory(target) as tmp:
        (tmp / "a.txt").write_text("second")
        raise RuntimeError("interrupted")
    assert (target / "a.txt").read_text() == "first"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["report"]


def test_output_under_a_file_is_an_output_path_error(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with (
        pytest.raises(OutputPathError, match="cannot create"),
        atomic_directory(blocker / "report"),
    ):
        pass
