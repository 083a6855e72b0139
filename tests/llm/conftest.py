"""Shared fixtures for the LLM guard tests: one detector per session (the model loads once)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "prompt-injection"


@pytest.fixture(scope="session")
def detector():  # type: ignore[no-untyped-def]
    """The full detector (rules + MiniLM + shipped head)."""
    pytest.importorskip("tokenizers", reason="the llm extra is not installed")
    from bastion.llm.detector import Detector

    return Detector()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """../shared/data/prompt-injection relative to the repo root; skip when absent."""
    if not (DATA / "dev.jsonl").is_file():
        pytest.skip(
            f"prompt-injection data not found at {DATA} (expected ../shared/data/prompt-injection)"
        )
    return DATA
