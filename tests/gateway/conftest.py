"""Fixtures: gateways started per test (own state dir) or per module."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from gateway_helpers import PG, Running, make_config, start


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


@pytest.fixture
def pg_schema() -> Iterator[str]:
    """A PostgreSQL schema of this test's own, dropped afterwards."""
    name = f"bastion_test_{uuid.uuid4().hex[:12]}"
    engine = sa.create_engine(PG.format(port=5432))
    with engine.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{name}"'))
    yield name
    with engine.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{name}" CASCADE'))
    engine.dispose()
