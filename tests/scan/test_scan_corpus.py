"""The whole generated corpus: every malicious file detected, no benign file malicious."""

from __future__ import annotations

from pathlib import Path

from corpus import SENTINEL, Sample

from bastion.integrity.scan import scan


def test_every_sample_gets_its_expected_verdict(corpus: tuple[Path, list[Sample]]) -> None:
    root, samples = corpus
    wrong = []
    for sample in samples:
        verdict = scan(root / sample.path).verdict
        expected = {"detected": {"suspicious", "malicious"}}.get(sample.expect, {sample.expect})
        if verdict not in expected:
            wrong.append((sample.path, sample.expect, verdict))
    assert wrong == []
    assert sum(s.label == "malicious" for s in samples) >= 60


def test_malicious_never_safe_benign_never_malicious_sentinel_absent(corpus: tuple[Path, list[Sample]]) -> None:
    root, samples = corpus
    report = scan(root)
    by_path = {Path(f.path).relative_to(root).as_posix(): f.verdict for f in report.files}
    for sample in samples:
        verdict = by_path[sample.path]
        if sample.label == "malicious":
            assert verdict != "safe", sample
        else:
            assert verdict != "malicious", sample
    assert not (root / SENTINEL).exists()
    assert not report.safe


def test_full_module_with_user_class_is_suspicious_not_malicious(corpus: tuple[Path, list[Sample]]) -> None:
    root, _ = corpus
    result = scan(root / "benign/torch_user_module.pt").files[0]
    assert result.verdict == "suspicious"
    assert any(f.global_ and f.global_.endswith("_UserNet") for f in result.findings)
    allowed = scan(root / "benign/torch_user_module.pt", allow=["__main__:_UserNet", "corpus:_UserNet"])
    assert allowed.safe
