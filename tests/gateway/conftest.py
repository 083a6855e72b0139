"""Fixtures: gateways started per test (own state dir) or per module."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from gateway_helpers import Running, make_config, start


@pytest.fixture
def serve(tmp_path: Path) -> Iterator[Callable[..., Running]]:
    """Start gateways with config overrides, each with its own state dir; stop them after."""
    running: list[Running] = []

    def _serve(state_dir: Path | None = None, **sections: Any) -> Running:
        directory = state_dir or tmp_path / f"state{len(running)}"
        gw = start(make_config(**sections), directory)
        running.append(gw)
        return gw

    yield _serve
    for gw in running:
        with contextlib.suppress(Exception):
            gw.stop()


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    """One default gateway for read-mostly tests in a module."""
    gw = start(make_config(), tmp_path_factory.mktemp("shared"))
    yield gw
    gw.stop()
