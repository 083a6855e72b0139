"""The shipped Prometheus rules pass `promtool`, and rules and dashboard use real metric names."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from bastion.gateway.metrics import Metrics

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
METRIC = re.compile(r"\bbastion_[a-z_]+")
SUFFIXES = ("_bucket", "_total", "_count", "_sum")


def exported_names() -> set[str]:
    text = Metrics().render().decode()
    return set(re.findall(r"^# TYPE (\S+)", text, re.M))


def base(name: str) -> str:
    for suffix in SUFFIXES:
        if name.endswith(suffix):
            return name[: -len(suffix)]
    return name


@pytest.mark.skipif(
    shutil.which("promtool") is None, reason="promtool (Debian package prometheus) not installed"
)
def test_alert_rules_pass_promtool() -> None:
    rules = DEPLOY / "prometheus"
    check = subprocess.run(
        ["promtool", "check", "rules", "bastion-rules.yml"],
        cwd=rules,
        capture_output=True,
        text=True,
    )
    assert check.returncode == 0, check.stdout + check.stderr
    test = subprocess.run(
        ["promtool", "test", "rules", "bastion-rules.test.yml"],
        cwd=rules,
        capture_output=True,
        text=True,
    )
    assert test.returncode == 0, test.stdout + test.stderr


@pytest.mark.parametrize("path", ["prometheus/bastion-rules.yml", "grafana/bastion-gateway.json"])
def test_every_metric_referenced_is_exported(path: str) -> None:
    text = (DEPLOY / path).read_text()
    if path.endswith(".json"):
        json.loads(text)
    used = {base(name) for name in METRIC.findall(text)}
    assert used, "no bastion metric referenced"
    missing = used - {base(n) for n in exported_names()}
    assert not missing, f"{path} references metrics the gateway does not export: {sorted(missing)}"
