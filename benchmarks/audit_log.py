"""Audit-log append throughput and latency: group commit against one commit per record.

Runs both modes interleaved in one process (same machine, same moment), for SQLite with
each durability setting and for PostgreSQL (if reachable on 127.0.0.1:5432), at 1, 16 and
64 concurrent appenders, and times `verify()`. Writes benchmarks/results/audit_log.json.

    .venv/bin/python benchmarks/audit_log.py [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import platform
import statistics
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from bastion.audit import open_log

PG = "postgresql+psycopg://postgres@127.0.0.1:5432/test"
RESULTS = Path(__file__).parent / "results" / "audit_log.json"


def _record(i: int) -> dict[str, Any]:
    return {
        "time": "2026-12-01T00:00:00.000Z",
        "tenant": "acme",
        "key_id": "k_2f9c",
        "model": "digits-cnn",
        "variant": "blue",
        "input_digest": f"{i:064x}",
        "output_digest": f"{i * 31:064x}",
        "decision": "allow",
        "latency_ms": 1.7,
    }


async def _load(log: Any, concurrency: int, total: int) -> dict[str, float]:
    latencies: list[float] = []
    counter = iter(range(total))

    async def worker() -> None:
        for i in counter:
            started = time.perf_counter()
            await log.append(_record(i))
            latencies.append(time.perf_counter() - started)

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "appends_per_s": round(total / elapsed, 1),
        "p50_ms": round(statistics.median(latencies) * 1000, 2),
        "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 2),
    }


def _pg_schema() -> str | None:
    engine = sa.create_engine(PG, connect_args={"connect_timeout": 3})
    try:
        schema = f"audit_bench_{uuid.uuid4().hex[:8]}"
        with engine.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        return schema
    except sa.exc.OperationalError:
        return None
    finally:
        engine.dispose()


def _drop(schema: str) -> None:
    engine = sa.create_engine(PG)
    with engine.begin() as conn:
        conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
    engine.dispose()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="fewer appends per run")
    args = parser.parse_args()
    total = 600 if args.quick else 3000
    tmp = Path(tempfile.mkdtemp(prefix="audit-bench-"))
    schema = _pg_schema()
    stores = [("sqlite", "full"), ("sqlite", "process")]
    if schema:
        stores += [("postgresql", "full"), ("postgresql", "process")]
    rows: list[dict[str, Any]] = []
    try:
        for backend, durability in stores:
            for concurrency in (1, 16, 64):
                n = max(100, total // 10) if concurrency == 1 else total
                for mode, max_batch in (("group", 512), ("per_record", 1)):
                    name = f"{backend}-{durability}-{concurrency}-{mode}"
                    if backend == "sqlite":
                        store = str(tmp / f"{name}.sqlite3")
                    else:
                        store = f"{PG}?options=-csearch_path%3D{schema}"
                    log = open_log(store, state_dir=tmp, durability=durability)  # type: ignore[arg-type]
                    log.max_batch = max_batch
                    figures = asyncio.run(_load(log, concurrency, n))
                    log.close()
                    row = {"store": backend, "durability": durability, "concurrency": concurrency,
                           "mode": mode, "appends": n, **figures}  # fmt: skip
                    rows.append(row)
                    print(json.dumps(row), flush=True)
                if backend == "postgresql":  # one shared schema: start each pair afresh
                    _drop(schema)  # type: ignore[arg-type]
                    schema = _pg_schema()
        log = open_log(tmp / "verify.sqlite3", state_dir=tmp, durability="process")
        log._store.append_batch([_record(i) for i in range(20_000)])
        started = time.perf_counter()
        result = log.verify()
        verify_rate = result.tree_size / (time.perf_counter() - started)
        log.close()
    finally:
        if schema:
            _drop(schema)

    def key(r: dict[str, Any]) -> str:
        return f"{r['store']}-{r['durability']}-{r['concurrency']}"

    baseline = {key(r): r["appends_per_s"] for r in rows if r["mode"] == "per_record"}
    # At concurrency 1 both modes run the same code (batches of one): that ratio is noise.
    ratios = {
        key(r): round(r["appends_per_s"] / baseline[key(r)], 2)
        for r in rows
        if r["mode"] == "group" and r["concurrency"] > 1
    }
    out = {
        "benchmark": "audit_log",
        "machine": {"python": platform.python_version(), "cpus": __import__("os").cpu_count()},
        "baseline": "the same log committing one record per transaction (max_batch=1)",
        "rows": rows,
        "group_over_per_record_throughput": ratios,
        "verify_leaves_per_s": round(verify_rate),
    }
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(out, indent=2) + "\n")
    print(json.dumps({"ratios": ratios, "verify_leaves_per_s": round(verify_rate)}, indent=2))


if __name__ == "__main__":
    main()
