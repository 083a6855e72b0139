"""`bastion demo` end to end, its report rendered by headless Chromium."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium() -> str:
    path = shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's chromium package (.ci/run does)")
        pytest.skip("headless Chromium is not installed (apt-get install chromium)")
    return path


class DomCounter(HTMLParser):
    """Counts scorecard rows and inline SVG plots in a rendered DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[str] = []
        self.figures = 0
        self.svgs_in_figures = 0
        self._in_figure = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "tr" and attr.get("class") == "scorecard-row":
            self.rows.append(str(attr.get("data-check")))
        if tag == "figure" and attr.get("class") == "plot":
            self.figures += 1
            self._in_figure = True
        if tag == "svg" and self._in_figure:
            self.svgs_in_figures += 1
            self._in_figure = False


@pytest.fixture(scope="module")
def demo_report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("demo") / "bastion-report"
    done = subprocess.run(
        [sys.executable, "-m", "bastion", "demo", "--budget", "quick", "--out", str(out)],
        check=True,
        capture_output=True,
        text=True,
        timeout=600,
    )
    (out.parent / "stderr.txt").write_text(done.stderr)
    return out


def test_demo_signs_loads_and_catches_tampering_before_assessing(demo_report: Path) -> None:
    said = " ".join((demo_report.parent / "stderr.txt").read_text().split())
    assert "with a fresh ed25519 key; the trusted loader verified it, scanned it (safe)" in said
    assert "one flipped byte fails verification: the model does not match its signature" in said
    assert said.index("flipped byte") < said.index("assessing builtin:digits-cnn")


def test_demo_shows_the_llm_guard(demo_report: Path) -> None:
    said = " ".join((demo_report.parent / "stderr.txt").read_text().split())
    assert "LLM guard: the same, base64-encoded: flagged as injection" in said
    assert "LLM guard: an instruction hidden in a retrieved page: flagged as injection" in said
    assert "LLM guard: an ordinary question: passed as benign" in said
    assert "redacted to 'Mail [EMAIL_1], card [CARD_1]'" in said


@pytest.mark.chromium
def test_rendered_report_has_scorecard_and_every_plot(demo_report: Path, tmp_path: Path) -> None:
    browser = chromium()
    doc = json.loads((demo_report / "report.json").read_text())
    dom = subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--dump-dom",
            (demo_report / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    counter = DomCounter()
    counter.feed(dom)
    assert counter.rows == [row["check"] for row in doc["scorecard"]]
    n_plots = sum(len(f["plots"]) for f in doc["findings"])
    assert n_plots >= 3
    assert counter.figures == n_plots and counter.svgs_in_figures == n_plots


@pytest.mark.chromium
def test_screenshot_renders(demo_report: Path, tmp_path: Path) -> None:
    browser = chromium()
    shot = tmp_path / "report.png"
    subprocess.run(
        [
            browser,
            *CHROMIUM_FLAGS,
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=1200,1600",
            f"--screenshot={shot}",
            (demo_report / "index.html").as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    data = shot.read_bytes()
    assert data.startswith(b"\x89PNG") and len(data) > 20_000  # a blank page compresses far smaller
