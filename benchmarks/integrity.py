"""Artifact integrity benchmark: Bastion against hashlib, blake3 and OpenSSF model_signing.

Generates a 2.2 GB model directory in the Hugging Face layout (three equal 700 MiB
`model-0000N-of-00003.safetensors` shards plus small JSON files) on /dev/shm, so files
are in RAM, then measures, interleaved round by round so machine noise hits every tool
alike:

- hashing: Bastion's manifest build (SHA-256 sharded; BLAKE3) against Python's
  `hashlib` over all cores and the `blake3` package with all threads, on the same bytes;
- end to end from the CLI: `bastion sign` / `bastion verify` against
  `model_signing sign key` / `model_signing verify key` with the same P-256 key;
- fixed per-call overhead: both CLIs signing a one-file model;
- encryption: `bastion encrypt` / `bastion decrypt` of one 2.2 GB file: wall time (beside
  `cp` of a same-size file just before, the floor for writing 2 GB here), CPU time (GB per
  CPU-second = the one-core rate on a shared machine) and peak RSS, plus the same operations
  in-process, to a file and to /dev/null.

Writes `benchmarks/results/integrity.json`. Run: `.venv/bin/python benchmarks/integrity.py`
(`--quick`: a quarter-size model, one round, nothing written). Everything generated is
deleted afterwards.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import mmap
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "integrity.json"
MB = 1 << 20
# Hugging Face style: equal shards, `model-0000N-of-00003.safetensors`; 3 x 700 MiB = 2.2 GB
SHARD_MB = (700, 700, 700)


def _cores() -> int:
    return len(os.sched_getaffinity(0))


def make_model(root: Path, scale: float) -> Path:
    """Shards of random bytes (one 64 MiB random block, each copy salted) plus JSON files."""
    model = root / "model"
    model.mkdir()
    block = bytearray(os.urandom(64 * MB))
    for index, size in enumerate(SHARD_MB):
        remaining = int(size * scale) * MB
        with (model / f"model-{index + 1:05d}-of-{len(SHARD_MB):05d}.safetensors").open(
            "wb"
        ) as out:
            while remaining:
                block[:8] = os.urandom(8)
                chunk = memoryview(block)[: min(len(block), remaining)]
                out.write(chunk)
                remaining -= len(chunk)
    (model / "config.json").write_text(json.dumps({"architectures": ["Demo"], "hidden_size": 4096}))
    (model / "tokenizer.json").write_text(json.dumps({"vocab": {f"t{i}": i for i in range(20000)}}))
    (model / "generation_config.json").write_text("{}")
    return model


def warm(paths: list[Path]) -> None:
    for path in paths:
        with path.open("rb", buffering=0) as handle:
            while handle.read(16 * MB):
                pass


def files_of(model: Path) -> list[Path]:
    return sorted(p for p in model.rglob("*") if p.is_file())


def hashlib_parallel(paths: list[Path], shard: int = 64 * MB) -> None:
    """The reference: hashlib.sha256 over mmap'd ranges on a pool of one thread per core."""
    ranges = [
        (p, a, min(a + shard, p.stat().st_size))
        for p in paths
        for a in range(0, p.stat().st_size, shard)
    ]

    def one(item: tuple[Path, int, int]) -> bytes:
        path, start, end = item
        with (
            path.open("rb") as handle,
            mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as mm,
        ):
            view = memoryview(mm)
            try:
                return hashlib.sha256(view[start:end]).digest()
            finally:
                view.release()

    with ThreadPoolExecutor(max_workers=_cores()) as pool:
        list(pool.map(one, ranges))


def blake3_reference(paths: list[Path]) -> None:
    """The reference: the blake3 package, all threads, over mmap, file by file."""
    import blake3

    for path in paths:
        hasher = blake3.blake3(max_threads=blake3.blake3.AUTO)
        if path.stat().st_size:
            hasher.update_mmap(str(path))
        hasher.digest()


def bastion_hash(model: Path, hash_type: str) -> None:
    from bastion.integrity import manifest

    manifest.build(model, manifest.new_serialization(hash_type))


def timed(fn: Callable[[], Any], cpu: list[float] | None = None) -> float:
    """Wall seconds of `fn()`; appends the process CPU seconds (all threads) to `cpu`."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    if cpu is not None:
        cpu.append(time.process_time() - start_cpu)
    return time.perf_counter() - start


# Every CLI runs with its bytecode cached, as after `pip install` (which compiles it): the
# editable checkout of Bastion has none, and PYTHONDONTWRITEBYTECODE may keep it that way.
# One shared cache directory (set in main), filled by untimed warm-up runs.
CLI_ENV = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}


def run_cli(args: list[str]) -> dict[str, float]:
    """Wall time, CPU time (user+sys) and peak RSS in MB of one command (GNU time)."""
    with tempfile.NamedTemporaryFile("r", suffix=".time") as stats:
        prefix = [GNU_TIME, "-f", "%U %S %M", "-o", stats.name] if GNU_TIME else []
        start = time.perf_counter()
        done = subprocess.run(
            [*prefix, *args],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=CLI_ENV,
        )
        wall = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}")
        fields = stats.read().split()
    if len(fields) < 3:
        return {"wall": wall, "cpu": float("nan"), "rss_mb": float("nan")}
    return {
        "wall": wall,
        "cpu": float(fields[-3]) + float(fields[-2]),
        "rss_mb": int(fields[-1]) / 1024,
    }


GNU_TIME = "/usr/bin/time" if Path("/usr/bin/time").exists() else None


def summary(samples: list[float], nbytes: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "samples_s": [round(s, 4) for s in samples],
        "best_s": round(min(samples), 4),
        "median_s": round(statistics.median(samples), 4),
    }
    if nbytes:
        out["best_gb_per_s"] = round(nbytes / min(samples) / 1e9, 3)
    return out


def write_keys(root: Path) -> None:
    from cryptography.hazmat.primitives import serialization as ser
    from cryptography.hazmat.primitives.asymmetric import ec

    from bastion.integrity import keys

    ec_key = ec.generate_private_key(ec.SECP256R1())
    (root / "ec.pem").write_bytes(
        ec_key.private_bytes(ser.Encoding.PEM, ser.PrivateFormat.PKCS8, ser.NoEncryption())
    )
    (root / "ec.pub").write_bytes(
        ec_key.public_key().public_bytes(ser.Encoding.PEM, ser.PublicFormat.SubjectPublicKeyInfo)
    )
    keys.write_keypair(keys.generate("x25519-mlkem768"), root / "recipient", None)


def cli_commands(root: Path, model: Path, tiny: Path) -> dict[str, list[str]]:
    bastion, ms = str(BIN / "bastion"), str(BIN / "model_signing")
    key, pub = str(root / "ec.pem"), str(root / "ec.pub")
    sig_b, sig_m, sig_b0 = root / "bastion.sig", root / "ms.sig", root / "bastion-files.sig"
    return {
        "bastion_sign": [bastion, "sign", str(model), "--key", key, "--signature", str(sig_b)],
        "model_signing_sign_key": [
            ms,
            "sign",
            "key",
            str(model),
            "--private_key",
            key,
            "--signature",
            str(sig_m),
        ],
        "bastion_verify": [bastion, "verify", str(model), "--key", pub, "--signature", str(sig_b)],
        "bastion_sign_whole_files": [
            bastion,
            "sign",
            str(model),
            "--key",
            key,
            "--signature",
            str(sig_b0),
            "--shard-size",
            "0",
        ],
        "bastion_sign_blake3": [
            bastion,
            "sign",
            str(model),
            "--key",
            key,
            "--signature",
            str(root / "bastion-blake3.sig"),
            "--hash",
            "blake3",
        ],
        "model_signing_verify_key": [
            ms,
            "verify",
            "key",
            str(model),
            "--public_key",
            pub,
            "--signature",
            str(sig_m),
        ],
        "model_signing_verifies_bastion_whole_files": [
            ms,
            "verify",
            "key",
            str(model),
            "--public_key",
            pub,
            "--signature",
            str(sig_b0),
        ],
        "bastion_verifies_model_signing": [
            bastion,
            "verify",
            str(model),
            "--key",
            pub,
            "--signature",
            str(sig_m),
        ],
        "bastion_sign_tiny_model": [
            bastion,
            "sign",
            str(tiny),
            "--key",
            key,
            "--signature",
            str(root / "t1.sig"),
        ],
        "model_signing_sign_tiny_model": [
            ms,
            "sign",
            "key",
            str(tiny),
            "--private_key",
            key,
            "--signature",
            str(root / "t2.sig"),
        ],
    }


def warm_up_commands(root: Path, tiny: Path, commands: dict[str, list[str]]) -> list[list[str]]:
    """Each CLI's sign and verify on the one-file model, so every module gets imported once."""
    bastion, ms = str(BIN / "bastion"), str(BIN / "model_signing")
    pub, sig_b, sig_m = str(root / "ec.pub"), str(root / "t1.sig"), str(root / "t2.sig")
    return [
        commands["bastion_sign_tiny_model"],
        commands["model_signing_sign_tiny_model"],
        [bastion, "verify", str(tiny), "--key", pub, "--signature", sig_b],
        [ms, "verify", "key", str(tiny), "--public_key", pub, "--signature", sig_m],
    ]


def _to_null(source: Path, run: Callable[[Any, Any], Any]) -> tuple[float, float]:
    """Wall and CPU seconds of one stream cipher pass whose output goes to /dev/null.

    Isolates Bastion's one-core pipeline (read, AES-GCM, framing) from the kernel's cost
    of creating new page-cache pages for an output file, which dominates on this VM.
    """
    with source.open("rb", buffering=0) as src, open(os.devnull, "wb", buffering=0) as sink:
        wall, cpu = time.perf_counter(), time.process_time()
        run(src, sink)
        return time.perf_counter() - wall, time.process_time() - cpu


def bench_encryption(root: Path, big: Path, rounds: int) -> dict[str, Any]:
    """CLI encrypt/decrypt of one big file (wall, CPU, RSS), plus in-process single-thread rates."""
    from bastion.integrity import crypt, keys

    bastion = str(BIN / "bastion")
    size = big.stat().st_size
    enc, out = root / "big.bin.enc", root / "big.out"
    runs: dict[str, list[dict[str, float]]] = {"encrypt": [], "decrypt": []}
    inproc: dict[str, list[tuple[float, float]]] = {"encrypt": [], "decrypt": []}
    pipeline: dict[str, list[tuple[float, float]]] = {"encrypt": [], "decrypt": []}
    # The floor for writing a 2 GB file here: `cp` of a same-size file, run just before each
    # operation with the same files alive (on this VM, new tmpfs pages cost more the more
    # memory is already in use).
    copies: dict[str, list[dict[str, float]]] = {"encrypt": [], "decrypt": []}
    spare = root / "copy.out"
    private = keys.load_private_key(root / "recipient" / "private.pem", None)
    for _ in range(rounds):
        for target in (enc, out):
            target.unlink(missing_ok=True)
        copies["encrypt"].append(run_cli(["cp", str(big), str(spare)]))
        spare.unlink()
        runs["encrypt"].append(
            run_cli(
                [
                    bastion,
                    "encrypt",
                    str(big),
                    "--recipient",
                    str(root / "recipient" / "public.pem"),
                    "--out",
                    str(enc),
                ]
            )
        )
        copies["decrypt"].append(run_cli(["cp", str(enc), str(spare)]))
        spare.unlink()
        runs["decrypt"].append(
            run_cli(
                [
                    bastion,
                    "decrypt",
                    str(enc),
                    "--key",
                    str(root / "recipient" / "private.pem"),
                    "--out",
                    str(out),
                ]
            )
        )
        with big.open("rb") as a, out.open("rb") as b:
            assert a.read(MB) == b.read(MB), "decrypt did not round-trip"
        for target in (enc, out):
            target.unlink(missing_ok=True)
        envelope = crypt.Envelope.new([crypt.RecipientWrapper(private.public())])
        wall, cpu = time.perf_counter(), time.process_time()
        crypt.encrypt_file(big, enc, envelope)
        inproc["encrypt"].append((time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = time.perf_counter(), time.process_time()
        crypt.decrypt_file(enc, out, [crypt.RecipientWrapper.for_private(private)])
        inproc["decrypt"].append((time.perf_counter() - wall, time.process_time() - cpu))
        unwrap = [crypt.RecipientWrapper.for_private(private)]
        pipeline["encrypt"].append(_to_null(big, partial(crypt.encrypt_stream, envelope=envelope)))
        pipeline["decrypt"].append(_to_null(enc, partial(crypt.decrypt_stream, keys=unwrap)))
    result: dict[str, Any] = {"file_bytes": size}
    for op in ("encrypt", "decrypt"):
        walls = [r["wall"] for r in runs[op]]
        cpus = [r["cpu"] for r in runs[op]]
        result[op] = {
            "cli_wall": summary(walls, size),
            "cli_cpu_s": [round(c, 3) for c in cpus],
            "cli_gb_per_cpu_s": round(size / min(cpus) / 1e9, 3),
            "cli_peak_rss_mb": round(max(r["rss_mb"] for r in runs[op]), 1),
            "cp_before_it_wall": summary([r["wall"] for r in copies[op]], size),
            "cli_wall_over_cp_wall": round(min(walls) / min(r["wall"] for r in copies[op]), 3),
            "in_process_wall": summary([w for w, _ in inproc[op]], size),
            "in_process_gb_per_cpu_s": round(size / min(c for _, c in inproc[op]) / 1e9, 3),
            "pipeline_to_dev_null_wall": summary([w for w, _ in pipeline[op]], size),
            "pipeline_to_dev_null_gb_per_cpu_s": round(
                size / min(c for _, c in pipeline[op]) / 1e9, 3
            ),
        }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="a quarter-size model, one round")
    parser.add_argument("--rounds", type=int, default=5)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    parser.add_argument("--tmp", default=shm, help="where to generate files (default: /dev/shm)")
    opts = parser.parse_args()
    scale, rounds = (0.25, 1) if opts.quick else (1.0, opts.rounds)

    root = Path(tempfile.mkdtemp(prefix="bastion-bench-", dir=opts.tmp))
    CLI_ENV["PYTHONPYCACHEPREFIX"] = str(root / "pycache")
    load_at_start = list(os.getloadavg())
    try:
        model = make_model(root, scale)
        tiny = root / "tiny"
        tiny.mkdir()
        (tiny / "config.json").write_text("{}")
        paths = files_of(model)
        nbytes = sum(p.stat().st_size for p in paths)
        write_keys(root)
        warm(paths)
        commands = cli_commands(root, model, tiny)
        for warm_up in warm_up_commands(root, tiny, commands):
            run_cli(warm_up)  # untimed: fills the bytecode cache of every CLI
        hashing: dict[str, list[float]] = {
            k: []
            for k in ("hashlib_parallel", "bastion_sha256", "blake3_package", "bastion_blake3")
        }
        cli: dict[str, list[dict[str, float]]] = {k: [] for k in commands}
        hashing_cpu: dict[str, list[float]] = {k: [] for k in hashing}
        for round_no in range(rounds):
            print(f"round {round_no + 1}/{rounds}", flush=True)
            # Alternate which of the pair runs first, so drift in machine load hits both.
            sha_pair = [
                ("hashlib_parallel", lambda: hashlib_parallel(paths)),
                ("bastion_sha256", lambda: bastion_hash(model, "sha256")),
            ]
            for name, fn in sha_pair if round_no % 2 == 0 else sha_pair[::-1]:
                hashing[name].append(timed(fn, hashing_cpu[name]))
            hashing["blake3_package"].append(
                timed(lambda: blake3_reference(paths), hashing_cpu["blake3_package"])
            )
            hashing["bastion_blake3"].append(
                timed(lambda: bastion_hash(model, "blake3"), hashing_cpu["bastion_blake3"])
            )
            for name, args in commands.items():
                cli[name].append(run_cli(args))

        big = root / "big.bin"
        with big.open("wb") as out:
            for path in paths:
                if path.suffix == ".safetensors":
                    with path.open("rb") as src:
                        shutil.copyfileobj(src, out, 16 * MB)
                    if big.stat().st_size >= 2000 * MB * scale:
                        break
        shutil.rmtree(model)
        warm([big])
        print("encryption", flush=True)
        encryption = bench_encryption(root, big, rounds)

        best = {k: min(v) for k, v in hashing.items()}
        best.update({k: min(r["wall"] for r in v) for k, v in cli.items()})
        cpu = {k: statistics.median(v) for k, v in hashing_cpu.items()}
        cpu.update({k: statistics.median(r["cpu"] for r in v) for k, v in cli.items()})
        med = {k: statistics.median(v) for k, v in hashing.items()}
        med.update({k: statistics.median(r["wall"] for r in v) for k, v in cli.items()})
        result: dict[str, Any] = {
            "machine": {
                "bytecode_cached": True,
                "cores": _cores(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "load_average_at_start": load_at_start,
                "load_average_at_end": list(os.getloadavg()),
            },
            "model": {
                "bytes": nbytes,
                "files": len(paths),
                "shards_mib": [int(s * scale) for s in SHARD_MB],
            },
            "rounds": rounds,
            "hashing": {
                k: {**summary(v, nbytes), "cpu_s": [round(c, 3) for c in hashing_cpu[k]]}
                for k, v in hashing.items()
            },
            "cli": {
                k: {**summary([r["wall"] for r in v]), "cpu_s": [round(r["cpu"], 3) for r in v]}
                for k, v in cli.items()
            },
            "encryption": encryption,
            "ratios": {
                "sha256_vs_hashlib_parallel": round(
                    best["hashlib_parallel"] / best["bastion_sha256"], 3
                ),
                "blake3_vs_blake3_package": round(
                    best["blake3_package"] / best["bastion_blake3"], 3
                ),
                "sign_speedup_vs_model_signing": round(
                    best["model_signing_sign_key"] / best["bastion_sign"], 3
                ),
                "sign_whole_files_speedup_vs_model_signing": round(
                    best["model_signing_sign_key"] / best["bastion_sign_whole_files"], 3
                ),
                "sign_blake3_speedup_vs_model_signing_sha256": round(
                    best["model_signing_sign_key"] / best["bastion_sign_blake3"], 3
                ),
                "tiny_model_sign_speedup_vs_model_signing": round(
                    best["model_signing_sign_tiny_model"] / best["bastion_sign_tiny_model"], 3
                ),
                "verify_over_sign": round(best["bastion_verify"] / best["bastion_sign"], 3),
            },
            "cpu_time_ratios": {
                "sha256_vs_hashlib_parallel": round(
                    cpu["hashlib_parallel"] / cpu["bastion_sha256"], 3
                ),
                "blake3_vs_blake3_package": round(cpu["blake3_package"] / cpu["bastion_blake3"], 3),
                "sign_model_signing_over_bastion": round(
                    cpu["model_signing_sign_key"] / cpu["bastion_sign"], 3
                ),
                "verify_over_sign": round(cpu["bastion_verify"] / cpu["bastion_sign"], 3),
            },
            "paired_round_ratios": {
                "sha256_vs_hashlib_parallel": [
                    round(a / b, 3)
                    for a, b in zip(
                        hashing["hashlib_parallel"], hashing["bastion_sha256"], strict=True
                    )
                ],
                "sign_speedup_vs_model_signing": [
                    round(a["wall"] / b["wall"], 3)
                    for a, b in zip(cli["model_signing_sign_key"], cli["bastion_sign"], strict=True)
                ],
            },
            "median_ratios": {
                "sha256_vs_hashlib_parallel": round(
                    med["hashlib_parallel"] / med["bastion_sha256"], 3
                ),
                "blake3_vs_blake3_package": round(med["blake3_package"] / med["bastion_blake3"], 3),
                "sign_speedup_vs_model_signing": round(
                    med["model_signing_sign_key"] / med["bastion_sign"], 3
                ),
                "verify_over_sign": round(med["bastion_verify"] / med["bastion_sign"], 3),
            },
        }
        ratios = result["ratios"]
        result["targets"] = {
            "sha256 >= 0.9x hashlib parallel": ratios["sha256_vs_hashlib_parallel"] >= 0.9,
            "blake3 >= 0.9x blake3 package": ratios["blake3_vs_blake3_package"] >= 0.9,
            "sign >= 1.5x faster than model_signing": ratios["sign_speedup_vs_model_signing"]
            >= 1.5,
            "verify <= 1.05x sign": ratios["verify_over_sign"] <= 1.05,
            **{
                f"{op} >= 1 GB/s per CPU-second": encryption[op]["cli_gb_per_cpu_s"] >= 1.0
                for op in ("encrypt", "decrypt")
            },
            **{
                f"{op} >= 1 GB/s wall (CLI)": encryption[op]["cli_wall"]["best_gb_per_s"] >= 1.0
                for op in ("encrypt", "decrypt")
            },
            **{
                f"{op} >= 1 GB/s one core (pipeline to /dev/null)": encryption[op][
                    "pipeline_to_dev_null_wall"
                ]["best_gb_per_s"]
                >= 1.0
                for op in ("encrypt", "decrypt")
            },
            **{
                f"{op} peak RSS <= 100 MB": encryption[op]["cli_peak_rss_mb"] <= 100
                for op in ("encrypt", "decrypt")
            },
        }
        if not opts.quick:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(
            json.dumps(
                {
                    k: result[k]
                    for k in ("machine", "ratios", "cpu_time_ratios", "median_ratios", "targets")
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
