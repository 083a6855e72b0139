"""Suite-wide settings: one torch thread per xdist worker, and a state dir per test."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

# Two xdist workers on two cores: one intra-op thread each avoids oversubscription.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")


@pytest.fixture
def bastion_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A fresh state directory (BASTION_HOME); the zoo cache stays shared across tests."""
    from bastion.core.paths import cache_dir

    monkeypatch.setenv("BASTION_CACHE", str(cache_dir()))
    home = tmp_path / "home"
    monkeypatch.setenv("BASTION_HOME", str(home))
    yield home
