"""Model-file scanner: find code hidden in model files without running it.

`scan(path)` walks files and directories, recognises containers by content (zip, tar,
gzip/bz2/xz, legacy PyTorch, joblib, NumPy, Keras, HDF5, ONNX, safetensors, GGUF,
tokenizer configs) and analyses every pickle stream with an opcode machine that follows
the stack and memo exactly as CPython's unpickler does, without ever resolving a global.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from bastion.integrity.scan.report import FileResult, ScanFinding, ScanReport, Verdict, to_sarif

__all__ = ["FileResult", "ScanFinding", "ScanReport", "Verdict", "scan", "to_sarif"]


def scan(
    path: str | os.PathLike[str],
    *,
    policy: str = "default",
    allow: Sequence[str] = (),
    allowlist_files: Sequence[str | os.PathLike[str]] = (),
) -> ScanReport:
    """Scan a file or a directory (recursively) and return one result per file.

    `policy` is "default" or "strict" (strict also flags imports that are merely unknown
    as malicious). `allow` adds `module:name` (or `module:*`) entries to the allowlist
    for this run; `allowlist_files` adds TOML/JSON files with the same shape as the
    built-in lists.
    """
    from bastion.integrity.scan.engine import scan_paths
    from bastion.integrity.scan.policy import load_policy

    rules = load_policy(policy, allow=allow, files=allowlist_files)
    return scan_paths([path], rules)
