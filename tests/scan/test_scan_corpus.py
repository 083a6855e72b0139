"""The whole generated corpus: every malicious file detected, no benign file malicious.

One test on purpose: the corpus takes seconds to build and a single test builds it once
even when pytest-xdist spreads tests over workers.
"""

from __future__ import annotations

from pathlib import Path

from corpus import SENTINEL, Sample

from bastion.integrity.scan import scan


def test_corpus_verdicts_detection_and_sentinel(corpus: tuple[Path, list[Sample]]) -> None:
    root, samples = corpus
    assert sum(s.label == "malicious" for s in samples) >= 60

    # each sample gets the verdict written next to it in the corpus builder
    report = scan(root)
    by_path = {Path(f.path).relative_to(root).as_posix(): f.verdict for f in report.files}
    wrong = []
    for sample in samples:
        verdict = by_path[sample.path]
        expected = {"detected": {"suspicious", "malicious"}}.get(sample.expect, {sample.expect})
        if verdict not in expected:
            wrong.append((sample.path, sample.expect, verdict))
        if sample.label == "malicious":
            assert verdict != "safe", sample
        else:
            assert verdict != "malicious", sample
    assert wrong == []
    assert not report.safe and report.exit_code in (1, 2)

    # nothing in the corpus ran while it was scanned
    assert not (root / SENTINEL).exists()

    # a full module pickle with a user class: suspicious (needs review), not malicious
    result = scan(root / "benign/torch_user_module.pt").files[0]
    assert result.verdict == "suspicious"
    assert any(f.global_ and f.global_.endswith("_UserNet") for f in result.findings)
    allowed = scan(
        root / "benign/torch_user_module.pt", allow=["corpus:_UserNet", "__main__:_UserNet"]
    )
    assert allowed.safe
