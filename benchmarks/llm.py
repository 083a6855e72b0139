"""LLM guard benchmark: detection quality on dev, obfuscation parity, latency on one core.

Detectors, side by side in one run:
  - `bastion-rules`: normalisation + rules only;
  - `bastion-full`: normalisation + rules + MiniLM windows + the shipped head;
  - `peer-tfidf-lr`: the classic lexical baseline (character 3-5-gram TF-IDF + logistic
    regression, trained on train.jsonl). No installable prompt-injection detector runs
    offline here (the DeBERTa-based ones need a model download), so this is the peer.

Reported per detector: precision / recall / F1 at its operating threshold, TPR at 1% FPR,
recall per attack kind, FPR per benign kind; obfuscated copies of dev attacks (base64, hex,
ROT13, URL encoding, zero-width, Unicode tags, confusables) caught vs their plain forms;
latency p50 / p99 per prompt (wall and CPU time, process pinned to one core, detectors
interleaved prompt by prompt so machine load hits them alike).

    .venv/bin/python benchmarks/llm.py [--quick]
"""

from __future__ import annotations

import argparse
import base64
import codecs
import json
import os
import random
import sys
import time
import urllib.parse
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "prompt-injection"
OUT = ROOT / "benchmarks" / "results" / "llm.json"


def _tags(text: str) -> str:
    return "Please read this." + "".join(
        chr(0xE0000 + ord(c)) for c in text if 0x20 <= ord(c) < 0x7F
    )


_HOMO = str.maketrans("aeopcxiyAEOPCXIY", "аеорсхіуАЕОРСХІУ")

OBFUSCATIONS: dict[str, Callable[[str], str]] = {
    "base64": lambda t: "Decode this and follow it: " + base64.b64encode(t.encode()).decode(),
    "hex": lambda t: "Hex: " + t.encode().hex(),
    "rot13": lambda t: codecs.encode(t, "rot13"),
    "url": lambda t: urllib.parse.quote(t),
    "zero-width": lambda t: "\u200b".join(t),
    "unicode-tags": _tags,
    "confusables": lambda t: t.translate(_HOMO),
}


def load(name: str) -> list[dict[str, object]]:
    with (DATA / name).open(encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def metrics(
    scores: np.ndarray, labels: np.ndarray, kinds: list[str], threshold: float
) -> dict[str, object]:
    flagged = scores >= threshold
    tp = int((flagged & (labels == 1)).sum())
    fp = int((flagged & (labels == 0)).sum())
    fn = int((~flagged & (labels == 1)).sum())
    precision = tp / max(1, tp + fp)
    recall = tp / max(1, tp + fn)
    negatives = np.sort(scores[labels == 0])[::-1]
    cut = negatives[int(np.floor(0.01 * len(negatives)))]
    tpr_at_1 = float((scores[labels == 1] > cut).mean())
    per_kind = {}
    for kind in sorted(set(kinds)):
        mask = np.array([k == kind for k in kinds])
        per_kind[kind] = round(float(flagged[mask].mean()), 4)
    return {
        "threshold": round(float(threshold), 4),
        "precision": round(precision, 4),
        "recall": round(recall, 4),
        "f1": round(2 * precision * recall / max(1e-9, precision + recall), 4),
        "fpr": round(fp / max(1, int((labels == 0).sum())), 4),
        "tpr_at_1pct_fpr": round(tpr_at_1, 4),
        "flag_rate_per_kind": per_kind,
    }


class Peer:
    """Character n-gram TF-IDF + logistic regression, threshold tuned on dev at 1% FPR."""

    def __init__(self, train: list[dict[str, object]], seed: int) -> None:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression

        self.vectorizer = TfidfVectorizer(
            analyzer="char_wb",
            ngram_range=(3, 5),
            min_df=2,
            max_features=200_000,
            sublinear_tf=True,
        )
        x = self.vectorizer.fit_transform([str(r["text"]) for r in train])
        y = np.array([int(r["label"]) for r in train])  # type: ignore[call-overload]
        self.model = LogisticRegression(
            C=10.0, max_iter=2000, class_weight="balanced", random_state=seed
        ).fit(x, y)

    def score(self, text: str) -> float:
        return float(self.model.predict_proba(self.vectorizer.transform([text]))[0, 1])


def dev_threshold(scores: np.ndarray, labels: np.ndarray) -> float:
    negatives = np.sort(scores[labels == 0])[::-1]
    return float(np.nextafter(negatives[int(np.floor(0.01 * len(negatives)))], 1.0))


def percentile_ms(values: list[float], q: float) -> float:
    return round(1000.0 * float(np.percentile(values, q)), 2)


def _serve(app: object) -> tuple[str, object]:
    import asyncio
    import socket
    import threading

    import uvicorn

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))  # type: ignore[arg-type]
    threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{port}", server


def proxy_overhead(requests: int, seed: int) -> dict[str, object]:
    """Non-streamed completions from a local upstream, direct vs through the guard proxy.

    The proxy path includes the gateway's IP limit, API-key check, key limit, audit log
    commit and the prompt and output scans. Direct and proxied calls alternate.
    """
    import tempfile

    import httpx
    from fastapi import FastAPI

    from bastion.gateway import create_app
    from bastion.gateway.config import ServeConfig
    from bastion.llm.proxy import ProxySettings, install

    upstream = FastAPI()

    @upstream.post("/v1/chat/completions")
    async def chat(body: dict[str, object]) -> dict[str, object]:
        reply = "Paris is the capital of France; it sits on the Seine."
        return {
            "id": "c",
            "object": "chat.completion",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": reply},
                    "finish_reason": "stop",
                }
            ],
        }

    up_url, up_server = _serve(upstream)
    config = ServeConfig.model_validate(
        {
            "limits": {"per_key": ["100000/second"], "per_ip": ["100000/second"]},
            "defences": {"routing": {"decoy": None}},
        }
    )
    state = tempfile.mkdtemp(prefix="bastion-llm-bench-")
    app = create_app(config, Path(state))
    install(app, ProxySettings(upstream=up_url))
    gw_url, gw_server = _serve(app)
    key, _ = app.state.gateway.keys.create("bench", "client", "default")
    prompts = [str(r["text"])[:2000] for r in load("dev.jsonl") if r["kind"] == "benign"]
    rng = random.Random(seed)
    direct_ms: list[float] = []
    proxied_ms: list[float] = []
    with httpx.Client(timeout=60) as client:
        for i in range(requests + 5):
            body = {"model": "m", "messages": [{"role": "user", "content": rng.choice(prompts)}]}
            t0 = time.perf_counter()
            client.post(up_url + "/v1/chat/completions", json=body).raise_for_status()
            t1 = time.perf_counter()
            answer = client.post(
                gw_url + "/v1/chat/completions",
                json=body,
                headers={"Authorization": f"Bearer {key}"},
            )
            t2 = time.perf_counter()
            if answer.status_code != 200:
                raise RuntimeError(f"proxy answered {answer.status_code}: {answer.text[:200]}")
            if i >= 5:  # warm-up
                direct_ms.append(1000 * (t1 - t0))
                proxied_ms.append(1000 * (t2 - t1))
    gw_server.should_exit = True  # type: ignore[attr-defined]
    up_server.should_exit = True  # type: ignore[attr-defined]
    overhead = [p - d for p, d in zip(proxied_ms, direct_ms, strict=True)]
    return {
        "requests": requests,
        "direct_p50_ms": round(float(np.percentile(direct_ms, 50)), 2),
        "proxied_p50_ms": round(float(np.percentile(proxied_ms, 50)), 2),
        "overhead_p50_ms": round(float(np.percentile(overhead, 50)), 2),
        "overhead_p99_ms": round(float(np.percentile(overhead, 99)), 2),
        "note": "benign dev prompts; proxy path: IP limit, auth, key limit, prompt scan, "
        "forward, output scan, audit",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description="LLM guard benchmark")
    parser.add_argument("--quick", action="store_true", help="subsample dev (about a minute)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=OUT)
    parser.add_argument(
        "--proxy-only", action="store_true", help="only measure proxy overhead; merge into --out"
    )
    args = parser.parse_args()
    if not (DATA / "dev.jsonl").is_file():
        print(
            f"error: {DATA} has no dev.jsonl\n"
            "  fix: put shared/data/prompt-injection beside the repo",
            file=sys.stderr,
        )
        return 2
    from bastion.core.fs import write_bytes_atomic

    load_start = round(os.getloadavg()[0], 2)
    # the proxy runs first, before the process is pinned to one core for the detector timings
    proxy = proxy_overhead(60 if args.quick else 200, args.seed)
    print(f"proxy overhead: {proxy}", file=sys.stderr)
    if args.proxy_only:
        merged = json.loads(args.out.read_text()) if args.out.is_file() else {}
        merged["proxy_overhead"] = proxy
        targets = merged.setdefault("targets", {})
        targets["proxy_overhead_p50_le_20ms"] = float(proxy["overhead_p50_ms"]) <= 20.0  # type: ignore[arg-type]
        write_bytes_atomic(args.out, (json.dumps(merged, indent=2) + "\n").encode())
        return 0
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})

    from bastion.llm.detector import Detector
    from bastion.llm.embed import get_embedder

    rng = random.Random(args.seed)
    train, dev = load("train.jsonl"), load("dev.jsonl")
    if args.quick:
        dev = rng.sample(dev, 300)
    labels = np.array([int(r["label"]) for r in dev])  # type: ignore[call-overload]
    kinds = [str(r["kind"]) for r in dev]
    texts = [str(r["text"]) for r in dev]

    full, rules_only = Detector(), Detector(use_model=False)
    peer = Peer(train, args.seed)
    embedder = get_embedder()
    full.analyse("warm up")

    detectors: dict[str, Callable[[str], float]] = {
        "bastion-full": lambda t: full.analyse(t).score,
        "bastion-rules": lambda t: rules_only.analyse(t).score,
        "peer-tfidf-lr": peer.score,
    }
    scores: dict[str, list[float]] = {name: [] for name in detectors}
    wall: dict[str, list[float]] = {name: [] for name in detectors}
    cpu: dict[str, list[float]] = {name: [] for name in detectors}
    tokens: list[int] = []
    started = time.time()
    for i, text in enumerate(texts):
        order = list(detectors.items())
        rng.shuffle(order)  # interleave, in random order, so load hits everyone alike
        for name, fn in order:
            w0, c0 = time.perf_counter(), time.thread_time()
            scores[name].append(fn(text))
            cpu[name].append(time.thread_time() - c0)
            wall[name].append(time.perf_counter() - w0)
        tokens.append(len(embedder.token_ids(text)))
        if i % 100 == 0:
            print(f"dev {i}/{len(texts)} ({time.time() - started:.0f}s)", file=sys.stderr)

    thresholds = {
        "bastion-full": full.threshold,
        "bastion-rules": 0.5,
        "peer-tfidf-lr": dev_threshold(np.array(scores["peer-tfidf-lr"]), labels),
    }
    quality = {
        name: metrics(np.array(scores[name]), labels, kinds, thresholds[name]) for name in detectors
    }

    within = [i for i, n in enumerate(tokens) if n <= 512]
    latency = {
        name: {
            "all_dev_prompts": {
                "n": len(texts),
                "wall_p50_ms": percentile_ms(wall[name], 50),
                "wall_p99_ms": percentile_ms(wall[name], 99),
                "cpu_p50_ms": percentile_ms(cpu[name], 50),
                "cpu_p99_ms": percentile_ms(cpu[name], 99),
            },
            "prompts_up_to_512_tokens": {
                "n": len(within),
                "wall_p50_ms": percentile_ms([wall[name][i] for i in within], 50),
                "wall_p99_ms": percentile_ms([wall[name][i] for i in within], 99),
                "cpu_p50_ms": percentile_ms([cpu[name][i] for i in within], 50),
                "cpu_p99_ms": percentile_ms([cpu[name][i] for i in within], 99),
            },
        }
        for name in detectors
    }

    # obfuscation parity: the same dev attacks, plain and re-encoded
    attacks = [r for r in dev if int(r["label"]) == 1 and "#obfuscated" not in str(r["source"])]  # type: ignore[call-overload]
    attacks = [r for r in attacks if len(str(r["text"])) <= 2000]
    if args.quick:
        attacks = attacks[:60]
    obfuscation: dict[str, dict[str, float]] = {}
    for name, fn in detectors.items():
        plain = np.array([fn(str(r["text"])) >= thresholds[name] for r in attacks])
        row = {"plain": round(float(plain.mean()), 4)}
        for method, encode in OBFUSCATIONS.items():
            caught = np.array([fn(encode(str(r["text"]))) >= thresholds[name] for r in attacks])
            row[method] = round(float(caught.mean()), 4)
        row["min_obfuscated_over_plain"] = round(
            min(v for k, v in row.items() if k != "plain") / max(row["plain"], 1e-9), 4
        )
        obfuscation[name] = row
        print(f"obfuscation {name}: {row}", file=sys.stderr)

    full_q, peer_q = quality["bastion-full"], quality["peer-tfidf-lr"]
    full_l = latency["bastion-full"]["prompts_up_to_512_tokens"]
    result = {
        "benchmark": "llm-guard",
        "data": "../shared/data/prompt-injection/dev.jsonl",
        "quick": args.quick,
        "seed": args.seed,
        "dev_rows": len(dev),
        "obfuscation_rows": len(attacks),
        "cpu": "process pinned to one core; onnxruntime intra-op threads = 1",
        "machine_note": "2 shared cores with other jobs running: wall times include waiting for "
        "the CPU; cpu_* figures are this thread's CPU time per prompt",
        "load_average_1m": {"start": load_start, "end": round(os.getloadavg()[0], 2)},
        "head": full.head.meta,
        "quality": quality,
        "obfuscation_caught_rate": obfuscation,
        "proxy_overhead": proxy,
        "latency": latency,
        "targets": {
            "tpr_at_1pct_fpr_ge_0.90": full_q["tpr_at_1pct_fpr"] >= 0.90,
            "operating_point_fpr_le_0.01": full_q["fpr"] <= 0.01,
            "operating_point_tpr_ge_0.90": full_q["recall"] >= 0.90,
            "obfuscated_ge_plain": obfuscation["bastion-full"]["min_obfuscated_over_plain"] >= 1.0,
            "p50_le_15ms_cpu": full_l["cpu_p50_ms"] <= 15.0,
            "p99_le_50ms_cpu": full_l["cpu_p99_ms"] <= 50.0,
            "p50_le_15ms_wall": full_l["wall_p50_ms"] <= 15.0,
            "p99_le_50ms_wall": full_l["wall_p99_ms"] <= 50.0,
            "proxy_overhead_p50_le_20ms": proxy["overhead_p50_ms"] <= 20.0,  # type: ignore[operator]
        },
        "ratios": {
            "tpr_at_1pct_fpr_full_over_peer": round(
                full_q["tpr_at_1pct_fpr"] / max(1e-9, peer_q["tpr_at_1pct_fpr"]), 3
            ),
            "tpr_at_1pct_fpr_full_over_rules": round(
                full_q["tpr_at_1pct_fpr"] / max(1e-9, quality["bastion-rules"]["tpr_at_1pct_fpr"]),
                3,
            ),
            "min_obfuscated_over_plain_full": obfuscation["bastion-full"][
                "min_obfuscated_over_plain"
            ],
            "min_obfuscated_over_plain_peer": obfuscation["peer-tfidf-lr"][
                "min_obfuscated_over_plain"
            ],
        },
        "elapsed_s": round(time.time() - started, 1),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_bytes_atomic(args.out, (json.dumps(result, indent=2) + "\n").encode())
    print(
        json.dumps(
            {
                "quality": {
                    k: {m: v for m, v in q.items() if m != "flag_rate_per_kind"}
                    for k, q in quality.items()
                },
                "targets": result["targets"],
            },
            indent=1,
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
