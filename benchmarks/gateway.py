"""`bastion serve` against a bare FastAPI/uvicorn endpoint serving the same digits-cnn.

The bare endpoint parses the OIP body, predicts and answers; `bastion serve` adds API-key
auth, rate limits (per IP and per key, set high so none trips), validation, the audit log
(SQLite, committed before each response) and metrics. A third configuration also runs
every detector stage of issue #8 (the recommended defence chain: PRADA, coverage,
stateful k-NN and Mahalanobis OOD, with decoy routing, output defence and watermark
stages; incidents only notify so the load is never throttled). All run one uvicorn worker
with the same settings; `wrk` (Debian package) drives them from a separate process at 16
and 64 connections, the servers measured alternately in the same run. Besides throughput
and latency it records each server's CPU time per request (from /proc), which a machine
shared with other work disturbs far less than wall-clock figures.
Writes benchmarks/results/gateway.json.

    .venv/bin/python benchmarks/gateway.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import numpy as np
from fastapi import FastAPI, Request, Response

RESULTS = Path(__file__).parent / "results" / "gateway.json"
BASTION = str(Path(sys.executable).with_name("bastion"))
PATH = "/v2/models/digits-cnn/infer"
DETECTORS = "bastion_all_detectors"
VARIANTS = {"bastion": "full", "bastion_process_durability": "process", DETECTORS: "full"}
MEASURES = ("rps", "p50_ms", "p99_ms", "server_cpu_ms_per_request")
TARGETS = {
    "throughput_ratio_min": 0.8,
    "p99_added_ms_max_at_16": 5.0,
    "errors": 0,
    "all_detectors_throughput_ratio_min": 0.7,
}


def detector_config() -> str:
    """The recommended defence chain with every detector on; incidents only notify."""
    from bastion.gateway.defence_stages import RECOMMENDED_STAGES

    return (
        f"[chain]\nstages = {json.dumps(RECOMMENDED_STAGES)}\n"
        '[defences.detect]\ndetectors = ["prada", "coverage", "stateful", "ood"]\n'
        '[defences.incidents]\nrules = [{ actions = ["notify"] }]\n'
    )


def bare_app() -> Any:
    """The peer: FastAPI + uvicorn, the same model, JSON in and out, nothing else."""
    from bastion.core.loading import load_model

    model = load_model("builtin:digits-cnn")
    app = FastAPI()

    @app.post(PATH)
    async def infer(request: Request) -> Response:
        payload = json.loads(await request.body())
        tensor = payload["inputs"][0]
        x = np.asarray(tensor["data"], dtype=np.float32).reshape(tensor["shape"])
        probs = model.predict_proba(x).astype(np.float32)
        out = {
            "model_name": "digits-cnn",
            "outputs": [
                {
                    "name": "probabilities",
                    "datatype": "FP32",
                    "shape": list(probs.shape),
                    "data": probs.ravel().tolist(),
                }
            ],
        }
        return Response(json.dumps(out, separators=(",", ":")), media_type="application/json")

    @app.get("/v2/health/ready")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    return app


def free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"{url}/v2/health/ready", timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not become ready")


def start_servers(
    home: Path, env: dict[str, str]
) -> tuple[dict[str, str], list[subprocess.Popen[bytes]], str]:
    """The bare peer and `bastion serve` with the audit log in each durability mode."""
    limits = (
        '[limits]\nper_key = ["1000000/second", "100000000/day"]\nper_ip = ["1000000/second"]\n'
    )
    key = subprocess.run(
        [BASTION, "keys", "create", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    ports = {name: free_port() for name in ("bare", *VARIANTS)}
    procs = [
        subprocess.Popen([sys.executable, __file__, "--serve-bare", str(ports["bare"])], env=env)
    ]
    for name, durability in VARIANTS.items():
        config = home / f"{name}.toml"
        audit_file = home / f"{name}-audit.sqlite3"
        extra = detector_config() if name == DETECTORS else ""
        config.write_text(
            limits + f'[audit]\nurl = "{audit_file}"\ndurability = "{durability}"\n' + extra
        )
        command = [
            BASTION,
            "serve",
            "builtin:digits-cnn",
            "--config",
            str(config),
            "--port",
            str(ports[name]),
        ]
        procs.append(subprocess.Popen([*command, "--workers", "1"], env=env))
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    for proc, url in zip(procs, urls.values(), strict=True):
        wait_ready(url, proc)
    # The first inference fits the detectors (seconds): do it before anything is timed.
    body = json.loads(json.loads(wrk_body()))
    headers = {"Authorization": f"Bearer {key}"}
    httpx.post(urls[DETECTORS] + PATH, json=body, headers=headers, timeout=300).raise_for_status()
    return urls, procs, key


def wrk_body() -> str:
    """The request body every load run sends, as a JSON string literal (for Lua)."""
    x = np.random.default_rng(0).random((1, 1, 8, 8)).round(6).ravel().tolist()
    body = json.dumps(
        {"inputs": [{"name": "input", "shape": [1, 1, 8, 8], "datatype": "FP32", "data": x}]}
    )
    return json.dumps(body)


def wrk_script(directory: Path, key: str) -> Path:
    script = directory / "post.lua"
    script.write_text(
        'wrk.method = "POST"\n'
        f"wrk.body = {wrk_body()}\n"
        'wrk.headers["Content-Type"] = "application/json"\n'
        f'wrk.headers["Authorization"] = "Bearer {key}"\n'
    )
    return script


def _ms(text: str) -> float:
    value, unit = re.fullmatch(r"([\d.]+)(us|ms|s)", text).groups()  # type: ignore[union-attr]
    return float(value) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[unit]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def run_wrk(url: str, script: Path, connections: int, seconds: int, pid: int) -> dict[str, Any]:
    cpu_before = cpu_seconds(pid)
    out = subprocess.run(
        [
            "wrk",
            "-t",
            "1",
            "-c",
            str(connections),
            "-d",
            f"{seconds}s",
            "--latency",
            "-s",
            str(script),
            url + PATH,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    percentiles = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    requests = int(re.search(r"(\d+) requests in", out).group(1))  # type: ignore[union-attr]
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(
        r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
    )
    errors = int(non2xx.group(1)) if non2xx else 0
    if socket_errors:
        errors += sum(int(g) for g in socket_errors.groups())
    return {
        "requests": requests,
        "server_cpu_ms_per_request": round(
            (cpu_seconds(pid) - cpu_before) / max(requests, 1) * 1000, 3
        ),
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(percentiles["50"]),
        "p99_ms": _ms(percentiles["99"]),
        "errors": errors,
    }


def describe(connections: int, name: str, run: dict[str, Any]) -> str:
    return (
        f"c={connections:<3} {name:<28} {run['rps']:8.0f} req/s  p50 {run['p50_ms']:6.2f} ms"
        f"  p99 {run['p99_ms']:6.2f} ms  cpu {run['server_cpu_ms_per_request']:.3f} ms/req"
        f"  errors {run['errors']}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter runs (5 s, 2 rounds)")
    parser.add_argument("--serve-bare", type=int, metavar="PORT", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve_bare:
        import uvicorn

        uvicorn.run(
            bare_app(),
            host="127.0.0.1",
            port=args.serve_bare,
            workers=1,
            log_level="warning",
            access_log=False,
        )
        return
    if shutil.which("wrk") is None:
        sys.exit("wrk is not installed: apt-get install -y wrk")
    from bastion.core.paths import cache_dir

    seconds, rounds = (5, 2) if args.quick else (10, 5)
    home = Path(tempfile.mkdtemp(prefix="bastion-bench-gw-"))
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_CACHE": str(cache_dir()),
        "OMP_NUM_THREADS": "1",
    }
    urls, procs, key = start_servers(home, env)
    script = wrk_script(home, key)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    try:
        pids = dict(zip(urls, (p.pid for p in procs), strict=True))
        for name, url in urls.items():  # warm-up
            run_wrk(url, script, 16, 2, pids[name])
        for connections in (16, 64):
            for _ in range(rounds):
                for name, url in urls.items():
                    runs.setdefault(str(connections), {}).setdefault(name, []).append(
                        run_wrk(url, script, connections, seconds, pids[name])
                    )
                    last = runs[str(connections)][name][-1]
                    print(describe(connections, name, last), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(timeout=30)
        shutil.rmtree(home, ignore_errors=True)

    summary: dict[str, Any] = {}
    for connections, by_name in runs.items():
        med = {
            name: {k: statistics.median(r[k] for r in rs) for k in MEASURES}
            for name, rs in by_name.items()
        }
        summary[connections] = {name: med[name] for name in urls}
        for name in VARIANTS:
            summary[connections][name] |= {
                "throughput_ratio": round(med[name]["rps"] / med["bare"]["rps"], 3),
                "p99_added_ms": round(med[name]["p99_ms"] - med["bare"]["p99_ms"], 2),
                "cpu_ratio": round(
                    med["bare"]["server_cpu_ms_per_request"]
                    / med[name]["server_cpu_ms_per_request"],
                    3,
                ),
            }
        summary[connections]["errors"] = {
            name: sum(r["errors"] for r in rs) for name, rs in by_name.items()
        }
    minimum = {name: TARGETS["throughput_ratio_min"] for name in VARIANTS}
    minimum[DETECTORS] = TARGETS["all_detectors_throughput_ratio_min"]
    result = {
        "benchmark": "gateway",
        "machine": {
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
            "load_avg_1m": os.getloadavg()[0],
        },
        "settings": {
            "seconds_per_run": seconds,
            "rounds": rounds,
            "workers": 1,
            "load_generator": "wrk -t1",
            "batch": 1,
        },
        "targets": TARGETS,
        "summary": summary,
        "runs": runs,
        "met": {
            name: {
                "throughput": all(
                    s[name]["throughput_ratio"] >= minimum[name] for s in summary.values()
                ),
                "p99_added_at_16": summary["16"][name]["p99_added_ms"]
                <= TARGETS["p99_added_ms_max_at_16"],
                "zero_errors": all(
                    s["errors"][name] == 0 and s["errors"]["bare"] == 0 for s in summary.values()
                ),
            }
            for name in VARIANTS
        },
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({"summary": summary, "met": result["met"]}, indent=2))


if __name__ == "__main__":
    main()
