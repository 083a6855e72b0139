"""Serving-time defences: `bastion attack-sim` on digits-cnn and cancer-logreg, and throughput
with every detector stage on against the bare endpoint of the gateway benchmark.

Part `sim` runs the simulation per model under four configurations: `undefended` (the plain
gateway chain), `detect-only` (all detectors, incidents only notify: queries until flagged),
`recommended` (detectors + decoy routing for flagged keys + DAWN) and `watermark-only` (DAWN
alone, where a well-trained clone and 10 independently trained models are tested against the
recorded pairs). Part `throughput` reuses benchmarks/gateway.py's harness (`wrk`, the bare
FastAPI endpoint) and serves digits-cnn with the recommended chain, the servers measured
alternately in one run. Results are merged into benchmarks/results/defences.json.

    .venv/bin/python benchmarks/defences.py [--quick] [--models digits-cnn,cancer-logreg]
        [--parts sim,throughput]

`--parts dawn` re-runs only the watermark-only configuration and keeps the other results.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).parent))

RESULTS = Path(__file__).parent / "results" / "defences.json"
TARGETS = {
    "flagged_within_queries": 500,
    "benign_flagged_max": 1,
    "evasion_flagged_within_queries": 200,
    "fidelity_drop_min": 0.40,
    "benign_accuracy_drop_max": 0.01,
    "dawn_log2_p_max": -40.0,
    "throughput_ratio_min": 0.7,
}


def load() -> dict[str, Any]:
    return json.loads(RESULTS.read_text()) if RESULTS.exists() else {}


def save(results: dict[str, Any]) -> None:
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    tmp = RESULTS.with_suffix(".tmp")
    tmp.write_text(json.dumps(results, indent=2))
    tmp.replace(RESULTS)


def verdicts(report: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, checked on one model's simulation report."""
    by = {c["config"]: c for c in report["configs"]}
    out: dict[str, Any] = {}
    det = by.get("detect-only")
    if det:
        out["median_flagged_at"] = {k: v["flagged_at"] for k, v in det["extraction"].items()}
        out["all_strategies_within_500"] = all(
            v is not None and v <= TARGETS["flagged_within_queries"]
            for v in out["median_flagged_at"].values()
        )
        out["benign_flagged"] = det["benign_flagged"]
        out["evasion_flagged_at"] = {k: v["flagged_at"] for k, v in det["evasion"].items()}
        out["evasion_within_200"] = all(
            v is not None and v <= TARGETS["evasion_flagged_within_queries"]
            for v in out["evasion_flagged_at"].values()
        )
    und, rec = by.get("undefended"), by.get("recommended")
    if und and rec:
        best = max(und["extraction"], key=lambda k: und["extraction"][k]["fidelity"])
        before, after = und["extraction"][best]["fidelity"], rec["extraction"][best]["fidelity"]
        out["best_strategy"] = best
        out["fidelity_undefended"] = before
        out["fidelity_recommended"] = after
        out["fidelity_drop_relative"] = round(1 - after / before, 4)
        out["benign_accuracy_drop"] = round(und["benign_accuracy"] - rec["benign_accuracy"], 4)
        out["benign_flagged_recommended"] = rec["benign_flagged"]
    wm = by.get("watermark-only")
    if wm and wm.get("dawn", {}).get("pairs"):
        out["dawn_clone_log2_p"] = wm["dawn"]["clone_log2_p_value"]
        out["dawn_independent_best_log2_p"] = wm["dawn"].get("independent_best_log2_p_value")
        out["dawn_independent_proven"] = wm["dawn"]["independent_proven"]
        out["dawn_met"] = (
            wm["dawn"]["clone_log2_p_value"] <= TARGETS["dawn_log2_p_max"]
            and wm["dawn"]["independent_proven"] == 0
        )
    return out


CONFIGS = ("undefended", "detect-only", "recommended", "watermark-only")


def sim_settings(model: str, quick: bool, configs: tuple[str, ...] = CONFIGS) -> Any:
    from bastion.gateway.simulate import SimSettings

    return SimSettings(
        model=model,
        configs=configs,
        benign=50,
        attackers=1 if quick else 3,
        dawn_budget=6000,
        dawn_independent=3 if quick else 10,
    )


def run_sim(models: list[str], quick: bool, configs: tuple[str, ...] = CONFIGS) -> None:
    """Simulate `configs` per model; a subset replaces only those configurations' results."""
    from bastion.gateway.simulate import simulate

    for model in models:
        started = time.perf_counter()
        report = simulate(sim_settings(model, quick, configs), lambda m: print(m, flush=True))
        seconds = round(time.perf_counter() - started, 1)
        results = load()
        previous = results.setdefault("sim", {}).get(model)
        if configs != CONFIGS and previous is not None:
            kept = [c for c in previous["configs"] if c["config"] not in configs]
            report["configs"] = kept + report["configs"]
            report["settings"]["configs"] = list(CONFIGS)
            report["seconds"] = previous.get("seconds")
            report.setdefault("reruns", previous.get("reruns", [])).append(
                {"configs": list(configs), "seconds": seconds, "at": time.strftime("%FT%TZ")}
            )
        else:
            report["seconds"] = seconds
        report["verdicts"] = verdicts(report)
        results["sim"][model] = report
        results["targets"] = TARGETS
        save(results)
        print(json.dumps(report["verdicts"], indent=2), flush=True)


def run_throughput(quick: bool) -> None:
    import gateway as gwb  # benchmarks/gateway.py: the bare endpoint and the wrk harness
    from bastion.core.paths import cache_dir
    from bastion.gateway.defence_stages import RECOMMENDED_STAGES

    seconds, rounds = (5, 2) if quick else (10, 3)
    home = Path(tempfile.mkdtemp(prefix="bastion-bench-def-"))
    env = {
        **os.environ,
        "BASTION_HOME": str(home),
        "BASTION_CACHE": str(cache_dir()),
        "OMP_NUM_THREADS": "1",
    }
    key = subprocess.run(
        [gwb.BASTION, "keys", "create", "--name", "bench"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    limits = '[limits]\nper_key = ["1000000/second"]\nper_ip = ["1000000/second"]\n'
    stages = json.dumps(RECOMMENDED_STAGES)
    configs = {
        "gateway": limits,
        "gateway_all_detectors": limits + f"[chain]\nstages = {stages}\n"
        '[defences.incidents]\nrules = [{ actions = ["notify"] }]\n',
    }
    ports = {name: gwb.free_port() for name in ("bare", *configs)}
    procs = [
        subprocess.Popen(
            [sys.executable, str(Path(gwb.__file__)), "--serve-bare", str(ports["bare"])], env=env
        )
    ]
    for name, text in configs.items():
        path = home / f"{name}.toml"
        path.write_text(text)
        procs.append(
            subprocess.Popen(
                [
                    gwb.BASTION,
                    "serve",
                    "builtin:digits-cnn",
                    "--config",
                    str(path),
                    "--port",
                    str(ports[name]),
                    "--workers",
                    "1",
                ],
                env=env,
            )
        )
    urls = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in urls}
    try:
        for proc, url in zip(procs, urls.values(), strict=True):
            gwb.wait_ready(url, proc)
        script = gwb.wrk_script(home, key)
        pids = dict(zip(urls, (p.pid for p in procs), strict=True))
        for name, url in urls.items():  # warm-up (fits the detectors)
            gwb.run_wrk(url, script, 16, 3, pids[name])
        for _ in range(rounds):
            for name, url in urls.items():
                run = gwb.run_wrk(url, script, 16, seconds, pids[name])
                runs[name].append(run)
                print(gwb.describe(16, name, run), flush=True)
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    median = {n: statistics.median(r["rps"] for r in rs) for n, rs in runs.items()}
    results = load()
    results["throughput"] = {
        "connections": 16,
        "seconds": seconds,
        "rounds": rounds,
        "median_rps": median,
        "ratio_all_detectors_to_bare": round(median["gateway_all_detectors"] / median["bare"], 3),
        "ratio_gateway_to_bare": round(median["gateway"] / median["bare"], 3),
        "cpu_ms_per_request": {
            n: statistics.median(r["server_cpu_ms_per_request"] for r in rs)
            for n, rs in runs.items()
        },
        "runs": runs,
    }
    results["targets"] = TARGETS
    save(results)
    print(json.dumps({k: v for k, v in results["throughput"].items() if k != "runs"}, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="1 attacker per strategy, 3 models")
    parser.add_argument("--models", default="digits-cnn,cancer-logreg")
    parser.add_argument(
        "--parts",
        default="sim,throughput",
        help="sim, throughput, and/or dawn (only the watermark-only configuration of sim, "
        "merged into the previous sim results)",
    )
    args = parser.parse_args()
    parts = args.parts.split(",")
    if "sim" in parts:
        run_sim(args.models.split(","), args.quick)
    elif "dawn" in parts:
        run_sim(args.models.split(","), args.quick, ("watermark-only",))
    if "throughput" in parts:
        run_throughput(args.quick)


if __name__ == "__main__":
    main()
