"""Assessment runs produce schema-valid JSON and a self-contained HTML report."""

from __future__ import annotations

import json
import re
from pathlib import Path

import jsonschema
import numpy as np
import pytest

from bastion.assess import AssessmentData, Budget, assess
from bastion.assess.checks.baseline import CHECK as BASELINE
from bastion.assess.checks.baseline import expected_calibration_error
from bastion.assess.report import schema
from bastion.assess.target import resolve
from bastion.core.errors import DataError
from bastion.core.finding import Finding, Severity


class BrokenCheck:
    name = "broken"
    title = "A check that crashes"

    def applies_to(self, model: object, data: AssessmentData) -> bool:
        return True

    def run(self, *args: object) -> list[Finding]:
        raise RuntimeError("boom")


class NeedsMoreData(BrokenCheck):
    name = "needs-more"

    def run(self, *args: object) -> list[Finding]:
        raise DataError("12 rows are too few for 8 shadow models", fix="pass more --train-data")


class NeverApplies(BrokenCheck):
    name = "never"

    def applies_to(self, model: object, data: AssessmentData) -> bool:
        return False


@pytest.fixture(scope="module")
def report_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("r") / "report"
    model, data = resolve("builtin:cancer-logreg")
    assess(
        model,
        data,
        [BASELINE, BrokenCheck(), NeedsMoreData(), NeverApplies()],
        spec="builtin:cancer-logreg",
        budget=Budget.QUICK,
        seed=1,
        out=out,
    )
    return out


def test_report_json_validates_against_schema(report_dir: Path) -> None:
    doc = json.loads((report_dir / "report.json").read_text())
    jsonschema.Draft202012Validator(schema(), format_checker=jsonschema.FormatChecker()).validate(
        doc
    )
    statuses = {row["check"]: row["status"] for row in doc["scorecard"]}
    assert statuses == {
        "baseline": "ok",
        "broken": "error",
        "needs-more": "error",
        "never": "skipped",
    }
    notes = {row["check"]: row["note"] for row in doc["scorecard"]}
    assert "too few for 8 shadow models" in notes["needs-more"]
    assert "fix: pass more --train-data" in notes["needs-more"]
    accuracy = next(f for f in doc["findings"] if f["id"] == "baseline.accuracy")
    assert 0.95 <= accuracy["value"] <= 1.0


def test_schema_rejects_a_tampered_report(report_dir: Path) -> None:
    doc = json.loads((report_dir / "report.json").read_text())
    doc["findings"][0]["severity"] = "catastrophic"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema())


def test_every_plot_is_written_and_inlined(report_dir: Path) -> None:
    doc = json.loads((report_dir / "report.json").read_text())
    files = [p["file"] for f in doc["findings"] for p in f["plots"]]
    assert len(files) == 3
    for name in files:
        assert (report_dir / name).read_text().startswith("<svg")
    html = (report_dir / "index.html").read_text()
    assert html.count('<figure class="plot"><svg') == len(files)
    assert not re.search(r"<script|https?://(?!www\.w3\.org)", html), (
        "report must be self-contained"
    )


def test_ece_matches_hand_computation() -> None:
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.6, 0.4], [0.6, 0.4]])
    labels = np.array([0, 1, 0, 0])
    # bin 0.9: accuracy 0.5, confidence 0.9; bin 0.6: accuracy 1.0, confidence 0.6
    assert expected_calibration_error(probs, labels) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)


def test_severity_order() -> None:
    assert Severity.CRITICAL > Severity.HIGH > Severity.MEDIUM > Severity.LOW > Severity.INFO
    assert max([Severity.LOW, Severity.HIGH, Severity.INFO]) is Severity.HIGH
