"""Shared fixtures for the scanner tests: the generated corpus and a file-writing helper."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

from corpus import Sample, build

from bastion.integrity.scan import ScanReport, scan


@pytest.fixture(scope="session")
def corpus(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[Sample]]:
    root = tmp_path_factory.mktemp("scan-corpus")
    return root, build(root)


@pytest.fixture
def scan_bytes(tmp_path: Path) -> Callable[..., ScanReport]:
    """Write bytes to a file named `name` and scan it."""

    def run(data: bytes, name: str = "model.bin", **kwargs: object) -> ScanReport:
        path = tmp_path / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return scan(path, **kwargs)  # type: ignore[arg-type]

    return run
