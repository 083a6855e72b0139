"""Model-file scanner benchmark: Bastion against picklescan, modelscan and fickling.

Three measurements, peers and Bastion interleaved in the same run:
1. detection on the generated corpus (tests/scan/corpus.py): detected, missed, false alarms, errors;
2. a large pickle of nested Python lists: wall time and peak RSS, Bastion CLI vs picklescan CLI;
3. a large PyTorch checkpoint with many tensors, end to end from each CLI.

Usage: .venv/bin/python benchmarks/scan.py [--quick]   (writes benchmarks/results/scan.json)
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
sys.path.insert(0, str(ROOT / "tests" / "scan"))


# ---- 1. detection on the corpus ------------------------------------------------------------
def _bastion(path: Path) -> str:
    from bastion.integrity.scan import scan

    verdict = scan(path).verdict
    return {"safe": "clean", "error": "error"}.get(verdict, "flagged")


def _picklescan(path: Path) -> str:
    from picklescan.scanner import scan_file_path

    result = scan_file_path(str(path))
    if result.infected_files or result.issues_count:
        return "flagged"
    return "error" if result.scan_err else "clean"


def _modelscan(path: Path) -> str:
    from modelscan.modelscan import ModelScan

    result = ModelScan().scan(path)
    if result["summary"]["total_issues"]:
        return "flagged"
    return "error" if result["errors"] else "clean"


def _fickling(path: Path) -> str:
    import fickling

    if zipfile.is_zipfile(path):
        results = list(fickling.scan_zip_archive(str(path), graceful=True).values())
    else:
        results = [fickling.scan_file(str(path), graceful=True)]
    if any(r.severity.name != "LIKELY_SAFE" for r in results):
        return "flagged"
    return "error" if not results or any(r.errors for r in results) else "clean"


TOOLS: dict[str, Callable[[Path], str]] = {
    "bastion": _bastion,
    "picklescan": _picklescan,
    "modelscan": _modelscan,
    "fickling": _fickling,
}


def detection(work: Path) -> dict[str, Any]:
    import logging

    from corpus import SENTINEL, build

    logging.disable(logging.CRITICAL)
    root = work / "corpus"
    samples = build(root)
    tally: dict[str, dict[str, Any]] = {
        t: {
            "detected": 0,
            "missed": 0,
            "false_alarms": 0,
            "errors": 0,
            "missed_files": [],
            "false_alarm_files": [],
        }
        for t in TOOLS
    }
    per_file: list[dict[str, Any]] = []
    for sample in samples:
        row: dict[str, Any] = {
            "path": sample.path,
            "label": sample.label,
            "technique": sample.technique,
        }
        for tool, run in TOOLS.items():
            try:
                outcome = run(root / sample.path)
            except Exception as exc:  # a peer crashing on a file counts as an error
                outcome = "error"
                row[f"{tool}_exception"] = type(exc).__name__
            row[tool] = outcome
            t = tally[tool]
            if outcome == "error":
                t["errors"] += 1
            if sample.label == "malicious":
                if outcome == "flagged" or (tool == "bastion" and outcome == "error"):
                    t["detected"] += 1
                else:
                    t["missed"] += 1
                    t["missed_files"].append(sample.path)
            elif outcome == "flagged":
                t["false_alarms"] += 1
                t["false_alarm_files"].append(sample.path)
        per_file.append(row)
    from bastion.integrity.scan import scan

    benign_malicious = [
        s.path
        for s in samples
        if s.label == "benign" and scan(root / s.path).verdict == "malicious"
    ]
    module_verdict = scan(root / "benign/torch_user_module.pt").verdict
    n_mal = sum(s.label == "malicious" for s in samples)
    for t in tally.values():
        t["detection_rate"] = round(t["detected"] / n_mal, 3)
    return {
        "samples": len(samples),
        "malicious": n_mal,
        "benign": len(samples) - n_mal,
        "tools": tally,
        "bastion_benign_called_malicious": benign_malicious,
        "bastion_full_module_user_class_verdict": module_verdict,
        "sentinel_created": (root / SENTINEL).exists(),
        "per_file": per_file,
        "note": (
            "Bastion counts 'error' (unscannable, exit 2) on a malicious file as detected: "
            "it is never reported safe. false_alarms counts benign files flagged at all "
            "(suspicious or malicious); bastion_benign_called_malicious must be empty."
        ),
    }


# ---- 2 and 3: large files, timed from each CLI ----------------------------------------------
# Every CLI runs with its bytecode cached, as after `pip install` (which compiles it): the
# editable checkout of Bastion has none, and PYTHONDONTWRITEBYTECODE may keep it that way.
# One shared cache directory, filled by an untimed first run of each command.
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def _run(cmd: list[str]) -> tuple[float, float, int, float]:
    """Wall seconds, peak RSS in MB, exit code and CPU seconds (user + system) of one command.

    CPU seconds are the command's and /usr/bin/time's (about a millisecond).

    Peak RSS comes from /usr/bin/time: a child's own ru_maxrss would include the pages it
    shared with this (large) benchmark process at fork time.
    """
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    proc = subprocess.run(
        ["/usr/bin/time", "-f", "%M", *cmd],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        check=False,
        env=CLI_ENV,
    )
    elapsed = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)  # microseconds, not GNU time's 10 ms
    cpu = after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime
    rss_kb = proc.stderr.decode().strip().splitlines()[-1]
    return elapsed, int(rss_kb) / 1024, proc.returncode, cpu


def nested_list_pickle(path: Path, megabytes: int) -> None:
    """A protocol-4 pickle of a list of lists of ints and floats, streamed to disk."""
    import pickle

    rng = random.Random(0)
    inner = []
    for _ in range(64):
        values: list[Any] = [rng.randrange(-(2**31), 2**31) for _ in range(700)]
        values += [rng.random() for _ in range(200)] + [rng.randrange(256) for _ in range(100)]
        inner.append(pickle.dumps(values, protocol=4)[11:-1])  # strip PROTO+FRAME and STOP
    target = megabytes << 20
    with open(path, "wb") as out:
        out.write(b"\x80\x04]\x94")
        written = 0
        while written < target:
            batch = b"(" + b"".join(inner[(written // 100 + i) % 64] for i in range(1000)) + b"e"
            out.write(batch)
            written += len(batch)
        out.write(b".")


def torch_checkpoint(path: Path, megabytes: int) -> None:
    import torch

    torch.manual_seed(0)
    n = max(1, megabytes // 2)
    state = {f"layer{i}.weight": torch.randn(512, 1024) for i in range(n)}  # 2 MiB each
    state["meta"] = {"epoch": 10, "names": list(state)[:5]}
    torch.save(state, path)


def timed(label: str, file: Path, runs: int) -> dict[str, Any]:
    commands = {
        "bastion": [str(BIN / "bastion"), "scan", str(file), "--format", "json"],
        "picklescan": [str(BIN / "picklescan"), "--path", str(file)],
        "bastion_cli_startup": [str(BIN / "bastion"), "scan", "--help"],  # no scanner imported
    }
    samples: dict[str, list[tuple[float, float, int, float]]] = {k: [] for k in commands}
    warm = file.with_name("warm-up.pt")  # a tiny zip with a pickle: every module imported
    with zipfile.ZipFile(warm, "w") as archive:
        archive.writestr("warm-up/data.pkl", b"\x80\x02}q\x00.")
    for cmd in commands.values():
        _run([str(warm) if arg == str(file) else arg for arg in cmd])  # fills the bytecode cache
    warm.unlink()
    for _ in range(runs):
        for tool, cmd in commands.items():  # interleaved: noise hits both alike
            samples[tool].append(_run(cmd))
    out: dict[str, Any] = {
        "file_mb": round(file.stat().st_size / 2**20, 1),
        "runs": runs,
        "bytecode_cached": True,
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
    }
    for tool, rows in samples.items():
        out[tool] = {
            "seconds_median": round(statistics.median(r[0] for r in rows), 3),
            "seconds_all": [round(r[0], 3) for r in rows],
            "peak_rss_mb": round(max(r[1] for r in rows), 1),
            "exit_codes": [r[2] for r in rows],
            "cpu_seconds_median": round(statistics.median(r[3] for r in rows), 4),
        }
    b, p = out["bastion"]["seconds_median"], out["picklescan"]["seconds_median"]
    startup = out["bastion_cli_startup"]["seconds_median"]
    out["bastion_seconds_excluding_cli_startup"] = round(b - startup, 3)
    out["speedup_vs_picklescan"] = round(p / b, 2)
    out["time_ratio_bastion_over_picklescan"] = round(b / p, 3)
    cpu_b, cpu_p = out["bastion"]["cpu_seconds_median"], out["picklescan"]["cpu_seconds_median"]
    out["cpu_ratio_bastion_over_picklescan"] = round(cpu_b / max(cpu_p, 1e-3), 3)
    print(
        f"{label}: bastion {b:.2f}s ({out['bastion']['peak_rss_mb']} MB), "
        f"picklescan {p:.2f}s ({out['picklescan']['peak_rss_mb']} MB)"
    )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="smaller files and single runs")
    parser.add_argument(
        "--parts",
        default="detection,lists,checkpoint",
        help="comma-separated subset; results of other parts already in scan.json are kept",
    )
    parser.add_argument(
        "--list-runs", type=int, default=2, help="rounds for the nested-list pickle (slow peer)"
    )
    parser.add_argument(
        "--checkpoint-runs", type=int, default=15, help="rounds for the checkpoint (~0.1 s each)"
    )
    args = parser.parse_args()
    if args.quick:
        args.list_runs = 1
    parts = set(args.parts.split(","))
    list_mb, ckpt_mb = (40, 100) if args.quick else (200, 500)
    runs = 1 if args.quick else args.checkpoint_runs
    work = Path(tempfile.mkdtemp(prefix="bastion-scan-bench-"))
    CLI_ENV["PYTHONPYCACHEPREFIX"] = str(work / "pycache")
    try:
        out = ROOT / "benchmarks" / "results" / "scan.json"
        result: dict[str, Any] = json.loads(out.read_text()) if out.exists() else {}
        result.update({"quick": args.quick, "python": sys.version.split()[0]})
        if "detection" in parts:
            print("detection on the corpus ...")
            result["detection"] = detection(work)
        for tool, t in result.get("detection", {}).get("tools", {}).items():
            print(
                f"  {tool:<11} detected {t['detected']}/{result['detection']['malicious']}, "
                f"false alarms {t['false_alarms']}, errors {t['errors']}"
            )
        if "lists" in parts:
            pkl = work / "nested_lists.pkl"
            nested_list_pickle(pkl, list_mb)
            result["nested_list_pickle"] = timed("nested-list pickle", pkl, args.list_runs)
            result["nested_list_pickle"]["targets"] = {
                "speedup_at_least": 10,
                "bastion_peak_rss_mb_at_most": 150,
            }
            pkl.unlink()
        if "checkpoint" in parts:
            ckpt = work / "checkpoint.pt"
            torch_checkpoint(ckpt, ckpt_mb)
            result["torch_checkpoint"] = timed("torch checkpoint", ckpt, runs)
            result["torch_checkpoint"]["targets"] = {"time_ratio_at_most": 0.5}
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_suffix(".json.partial")
        tmp.write_text(json.dumps(result, indent=1))
        os.replace(tmp, out)
        print(f"wrote {out}")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
