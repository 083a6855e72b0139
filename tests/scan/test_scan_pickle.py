"""The pickle machine: stack and memo semantics, imports, call sites, parse errors, limits."""

from __future__ import annotations

import pickle
import struct
from collections.abc import Callable
from pathlib import Path

import pytest
from corpus import _glob, _s, call
from scan_helpers import rules

from bastion.integrity.scan import ScanReport
from bastion.integrity.scan.engine import scan_paths
from bastion.integrity.scan.limits import Limits
from bastion.integrity.scan.policy import load_policy

Scan = Callable[..., ScanReport]


def globals_of(report: ScanReport) -> set[str]:
    return {f.global_ for file in report.files for f in file.findings if f.global_}


def test_plain_data_of_every_protocol_is_safe(scan_bytes: Scan) -> None:
    obj = {
        "a": [1, 2.5, None, True, "x" * 300, b"y"],
        "t": (1, (2, 3)),
        "s": {1, 2},
        "f": frozenset([3]),
    }
    for proto in range(6):
        report = scan_bytes(pickle.dumps(obj, protocol=proto))
        assert report.safe, (proto, report.to_dict())


def test_stack_global_from_memo_slots_resolves_to_the_real_target(scan_bytes: Scan) -> None:
    data = (
        b"\x80\x04"
        + _s("posix")
        + b"\x94"
        + _s("system")
        + b"\x94"
        + b"00"
        + b"h\x00h\x01\x93"
        + _s("x")
        + b"\x85R."
    )
    report = scan_bytes(data)
    assert report.verdict == "malicious"
    assert "posix.system" in globals_of(report)


def test_memoize_index_is_memo_length_even_after_sparse_puts(scan_bytes: Scan) -> None:
    # BINPUT 0 then MEMOIZE writes slot 1 (len(memo) == 1): "os" is in slot 0, "harmless" in 1
    data = (
        b"\x80\x04"
        + _s("os")
        + b"q\x00"
        + _s("harmless")
        + b"\x94"
        + b"00"
        + b"h\x00"
        + _s("system")
        + b"\x93."
    )
    assert "os.system" in globals_of(scan_bytes(data))


def test_protocol0_strings_feed_stack_global(scan_bytes: Scan) -> None:
    data = b"\x80\x04S'subprocess'\nS\"run\"\n\x93."
    assert "subprocess.run" in globals_of(scan_bytes(data))


def test_python2_names_are_mapped_like_cpython(scan_bytes: Scan) -> None:
    report = scan_bytes(call("__builtin__", "eval", "1"))
    assert "builtins.eval" in globals_of(report) and report.verdict == "malicious"


def test_bulk_number_runs_keep_the_stack_exact(scan_bytes: Scan) -> None:
    # 40 ints inside a MARK, TUPLE, POP, then strings for STACK_GLOBAL: a miscount would shift them
    ints = b"".join(b"K" + bytes([i]) for i in range(20)) + b"".join(
        b"J" + struct.pack("<i", i) for i in range(20)
    )
    data = b"\x80\x04" + _s("os") + b"(" + ints + b"t0" + _s("system") + b"\x93."
    assert "os.system" in globals_of(scan_bytes(data))
    data = b"\x80\x04" + _s("os") + _s("system") + ints + b"0" * 40 + b"\x93."
    assert "os.system" in globals_of(scan_bytes(data))


def test_non_string_stack_global_operands_are_a_parse_error_like_cpython(scan_bytes: Scan) -> None:
    data = b"\x80\x04K\x01K\x02\x93."
    with pytest.raises(pickle.UnpicklingError):
        pickle.loads(data)
    report = scan_bytes(data)
    assert report.verdict == "error" and "pickle.parse_error" in rules(report)


def test_call_results_as_stack_global_operands_are_malicious(scan_bytes: Scan) -> None:
    data = b"\x80\x04" + _glob("collections", "OrderedDict") + b")R" + _s("system") + b"\x93."
    report = scan_bytes(data)
    assert report.verdict == "malicious" and "pickle.global.unresolved" in rules(report)


def test_findings_before_a_parse_error_are_kept(scan_bytes: Scan) -> None:
    report = scan_bytes(call("os", "system", "x")[:-1] + b"\xff")
    assert report.verdict == "malicious"
    assert {"pickle.import.denied", "pickle.parse_error"} <= rules(report)


def test_truncated_benign_pickle_is_an_error_not_safe(scan_bytes: Scan) -> None:
    report = scan_bytes(pickle.dumps({"a": list(range(50))}, protocol=4)[:-5])
    assert report.verdict == "error" and report.exit_code == 2


def test_every_concatenated_stream_is_read(scan_bytes: Scan) -> None:
    data = (
        pickle.dumps([1, 2], protocol=2) + pickle.dumps("x", protocol=0) + call("nt", "system", "x")
    )
    report = scan_bytes(data)
    assert "nt.system" in globals_of(report) and report.verdict == "malicious"


def test_extension_codes_are_unresolvable(scan_bytes: Scan) -> None:
    report = scan_bytes(b"\x80\x02\x83\x10\x00)R.")
    assert "pickle.extension" in rules(report) and report.verdict == "malicious"


def test_unknown_globals_are_suspicious_and_strict_makes_them_malicious(scan_bytes: Scan) -> None:
    data = call("mypkg.layers", "Custom", "x")
    assert scan_bytes(data).verdict == "suspicious"
    assert scan_bytes(data, policy="strict").verdict == "malicious"
    assert scan_bytes(data, allow=["mypkg.layers:Custom"]).safe
    assert scan_bytes(data, allow=["mypkg.*:*"]).safe


def test_user_allow_entries_override_the_denylist_only_when_asked(scan_bytes: Scan) -> None:
    data = call("os", "getcwd")
    assert scan_bytes(data).verdict == "malicious"
    assert scan_bytes(data, allow=["os:getcwd"]).safe


def test_dunder_traversal_in_dotted_names_is_denied(scan_bytes: Scan) -> None:
    data = b"\x80\x04" + _glob("collections", "OrderedDict.__init__.__globals__") + b"."
    assert scan_bytes(data).verdict == "malicious"


def test_nested_pickle_bytes_handed_to_a_loader_are_scanned(scan_bytes: Scan) -> None:
    inner = call("os", "system", "x")
    data = (
        b"\x80\x04"
        + _glob("torch.storage", "_load_from_bytes")
        + b"C"
        + bytes([len(inner)])
        + inner
        + b"\x85R."
    )
    report = scan_bytes(data)
    assert "posix.system" in globals_of(report) or "os.system" in globals_of(report)
    benign = pickle.dumps([1, 2, 3], protocol=2)
    data = (
        b"\x80\x04"
        + _glob("torch.storage", "_load_from_bytes")
        + b"C"
        + bytes([len(benign)])
        + benign
        + b"\x85R."
    )
    assert scan_bytes(data).safe


def test_loader_called_on_a_computed_value_is_malicious(scan_bytes: Scan) -> None:
    data = (
        b"\x80\x04"
        + _glob("torch.storage", "_load_from_bytes")
        + _glob("collections", "OrderedDict")
        + b")R\x85R."
    )
    assert "pickle.loader.opaque" in rules(scan_bytes(data))


def test_joblib_raw_array_bytes_are_skipped_not_parsed(scan_bytes: Scan) -> None:
    import io

    import joblib
    import numpy as np

    buf = io.BytesIO()
    # array bytes that would be a malicious pickle if parsed as opcodes
    payload = np.frombuffer(call("os", "system", "x").ljust(48, b"\x00"), dtype=np.uint8).copy()
    joblib.dump({"a": payload, "b": np.arange(7.0)}, buf)
    assert scan_bytes(buf.getvalue()).safe


def _scan_with(tmp_path: Path, data: bytes, **limits: float) -> ScanReport:
    path = tmp_path / "f.pkl"
    path.write_bytes(data)
    return scan_paths([path], load_policy(), Limits(**limits))  # type: ignore[arg-type]


def test_memo_growth_limit_is_a_finding(tmp_path: Path) -> None:
    data = b"\x80\x04N" + b"\x94" * 300_000 + b"."
    report = _scan_with(tmp_path, data, max_memo=100_000)
    assert "limit.memo" in rules(report) and not report.safe


def test_stack_growth_limit_is_a_finding(tmp_path: Path) -> None:
    data = b"\x80\x04" + b"N" * 300_000 + b"."
    assert "limit.stack" in rules(_scan_with(tmp_path, data, max_stack=100_000))


def test_mark_nesting_limit_is_a_finding(tmp_path: Path) -> None:
    data = b"\x80\x04" + b"(" * 300_000 + b"."
    assert "limit.nesting" in rules(_scan_with(tmp_path, data, max_marks=100_000))


def test_time_limit_is_a_finding(tmp_path: Path) -> None:
    data = b"\x80\x04" + (b"N0" * 400_000) + b"N."
    assert "limit.time" in rules(_scan_with(tmp_path, data, max_seconds=0.0))


def test_large_base64_payload_handed_to_a_loader_is_scanned(scan_bytes: Scan) -> None:
    import base64

    inner = call("os", "system", "x") + b"\x00" * (1 << 20)  # longer than the kept-string cap
    text = base64.b64encode(inner)
    data = (
        b"\x80\x04"
        + _glob("torch.storage", "_load_from_bytes")
        + b"X"
        + struct.pack("<I", len(text))
        + text
        + b"\x85R."
    )
    assert "os.system" in globals_of(scan_bytes(data))


def test_wildcards_cover_undotted_class_names_only() -> None:
    policy = load_policy(allow=["mypkg:*"])
    assert policy.judge("torch.nn.modules.linear", "Linear") == "allowed"
    assert policy.judge("sklearn.utils.validation", "check_memory") == "unknown"
    assert policy.judge("torch.nn.modules.module", "torch.storage._load_from_bytes") == "unknown"
    assert policy.judge("sklearn.utils.estimator_checks", "pickle.loads") == "denied"
    assert policy.judge("numpy.random._common", "np.load") == "denied"
    assert policy.judge("sklearn.utils.discovery", "import_module") == "denied"
    # a user wildcard admits any undotted name of its module, never a dotted path
    assert policy.judge("mypkg", "helper") == "allowed"
    assert policy.judge("mypkg", "sub.helper") == "unknown"


def test_dotted_alias_of_a_loader_has_its_payload_scanned(scan_bytes: Scan) -> None:
    inner = call("posix", "system", "true", proto=0)
    data = (
        b"\x80\x04"
        + _s("torch.nn.modules.module")
        + _s("torch.storage._load_from_bytes")
        + b"\x93B"
        + struct.pack("<I", len(inner))
        + inner
        + b"\x85R."
    )
    report = scan_bytes(data)
    assert report.files[0].verdict == "malicious"
    assert "posix.system" in globals_of(report)


def test_opcode_set_is_every_pickletools_opcode() -> None:
    """The engine spells the opcode bytes out; they must be exactly CPython's."""
    import pickletools

    from bastion.integrity.scan.engine import _OPCODES

    assert frozenset(op.code.encode("latin-1")[0] for op in pickletools.opcodes) == _OPCODES
