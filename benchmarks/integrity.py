"""Artifact integrity benchmark: Bastion against hashlib, blake3 and OpenSSF model_signing.

Generates a ~2 GB model directory (a few multi-hundred-MB shards plus small JSON files)
in a temporary directory, warms the page cache, then measures, interleaved round by
round so machine noise hits every tool alike:

- hashing: Bastion's manifest build (SHA-256 sharded; BLAKE3) against Python's
  `hashlib` over all cores and the `blake3` package with all threads, on the same bytes;
- end to end from the CLI: `bastion sign` / `bastion verify` against
  `model_signing sign key` / `model_signing verify key` with the same P-256 key;
- encryption: `bastion encrypt` / `bastion decrypt` of one 2 GB file: throughput and
  the peak RSS of the process.

Writes `benchmarks/results/integrity.json`. Run: `.venv/bin/python benchmarks/integrity.py`
(`--quick` for a 512 MB model and one round). Everything generated is deleted afterwards.
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
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS = ROOT / "benchmarks" / "results" / "integrity.json"
MB = 1 << 20
SHARD_MB = (620, 540, 480, 410)  # ~2.05 GB in four safetensors-like shards


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


def timed(fn: Callable[[], Any]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def run_cli(args: list[str]) -> tuple[float, float | None]:
    """Wall time and peak RSS (MB, from GNU time when installed) of one command."""
    gnu_time = shutil.which("time") or ("/usr/bin/time" if Path("/usr/bin/time").exists() else None)
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as rss_file:
        prefix = [gnu_time, "-f", "%M", "-o", rss_file.name] if gnu_time else []
        start = time.perf_counter()
        done = subprocess.run(
            [*prefix, *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
        )
        elapsed = time.perf_counter() - start
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(args)} failed: {done.stderr}")
        text = rss_file.read().strip().splitlines()
    return elapsed, (int(text[-1]) / 1024 if gnu_time and text else None)


def summary(samples: list[float], nbytes: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {
        "samples_s": [round(s, 4) for s in samples],
        "best_s": round(min(samples), 4),
        "median_s": round(statistics.median(samples), 4),
    }
    if nbytes:
        out["best_gb_per_s"] = round(nbytes / min(samples) / 1e9, 3)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="512 MB model, one round")
    parser.add_argument("--rounds", type=int, default=3)
    shm = "/dev/shm" if os.access("/dev/shm", os.W_OK) else None
    parser.add_argument(
        "--tmp", default=shm, help="where to generate files (default: /dev/shm, RAM)"
    )
    opts = parser.parse_args()
    scale, rounds = (0.25, 1) if opts.quick else (1.0, opts.rounds)

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from bastion.integrity import keys

    root = Path(tempfile.mkdtemp(prefix="bastion-bench-", dir=opts.tmp))
    try:
        model = make_model(root, scale)
        paths = files_of(model)
        nbytes = sum(p.stat().st_size for p in paths)
        ec_key = ec.generate_private_key(ec.SECP256R1())
        (root / "ec.pem").write_bytes(
            ec_key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        (root / "ec.pub").write_bytes(
            ec_key.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
            )
        )
        keys.write_keypair(keys.generate("x25519-mlkem768"), root / "recipient", None)
        warm(paths)

        bastion, ms = str(BIN / "bastion"), str(BIN / "model_signing")
        sig_b, sig_m, sig_b0 = root / "bastion.sig", root / "ms.sig", root / "bastion-files.sig"
        commands = {
            "bastion_sign": [
                bastion,
                "sign",
                str(model),
                "--key",
                str(root / "ec.pem"),
                "--signature",
                str(sig_b),
            ],
            "bastion_sign_whole_files": [
                bastion,
                "sign",
                str(model),
                "--key",
                str(root / "ec.pem"),
                "--signature",
                str(sig_b0),
                "--shard-size",
                "0",
            ],
            "model_signing_sign_key": [
                ms,
                "sign",
                "key",
                str(model),
                "--private_key",
                str(root / "ec.pem"),
                "--signature",
                str(sig_m),
            ],
            "bastion_verify": [
                bastion,
                "verify",
                str(model),
                "--key",
                str(root / "ec.pub"),
                "--signature",
                str(sig_b),
            ],
            "model_signing_verify_key": [
                ms,
                "verify",
                "key",
                str(model),
                "--public_key",
                str(root / "ec.pub"),
                "--signature",
                str(sig_m),
            ],
            "model_signing_verifies_bastion_whole_files": [
                ms,
                "verify",
                "key",
                str(model),
                "--public_key",
                str(root / "ec.pub"),
                "--signature",
                str(sig_b0),
            ],
            "bastion_verifies_model_signing": [
                bastion,
                "verify",
                str(model),
                "--key",
                str(root / "ec.pub"),
                "--signature",
                str(sig_m),
            ],
        }
        hashing: dict[str, list[float]] = {
            k: []
            for k in ("hashlib_parallel", "bastion_sha256", "blake3_package", "bastion_blake3")
        }
        cli: dict[str, list[float]] = {k: [] for k in commands}
        for round_no in range(rounds):
            print(f"round {round_no + 1}/{rounds}", flush=True)
            hashing["hashlib_parallel"].append(timed(lambda: hashlib_parallel(paths)))
            hashing["bastion_sha256"].append(timed(lambda: bastion_hash(model, "sha256")))
            hashing["blake3_package"].append(timed(lambda: blake3_reference(paths)))
            hashing["bastion_blake3"].append(timed(lambda: bastion_hash(model, "blake3")))
            for name, args in commands.items():
                cli[name].append(run_cli(args)[0])

        big = root / "big.bin"
        with big.open("wb") as out:
            for path in paths:
                if path.suffix == ".safetensors":
                    with path.open("rb") as src:
                        shutil.copyfileobj(src, out, 16 * MB)
        shutil.rmtree(model)
        big_bytes = big.stat().st_size
        warm([big])
        enc_runs: dict[str, list[float]] = {"encrypt": [], "decrypt": []}
        rss: dict[str, float] = {"encrypt": 0.0, "decrypt": 0.0}
        startup: list[float] = []
        for _ in range(rounds):
            for target in (root / "big.bin.enc", root / "big.out"):
                target.unlink(missing_ok=True)
            startup.append(run_cli([bastion, "--version"])[0])
            took, peak = run_cli(
                [
                    bastion,
                    "encrypt",
                    str(big),
                    "--recipient",
                    str(root / "recipient" / "public.pem"),
                    "--out",
                    str(root / "big.bin.enc"),
                ]
            )
            enc_runs["encrypt"].append(took)
            rss["encrypt"] = max(rss["encrypt"], peak or 0.0)
            took, peak = run_cli(
                [
                    bastion,
                    "decrypt",
                    str(root / "big.bin.enc"),
                    "--key",
                    str(root / "recipient" / "private.pem"),
                    "--out",
                    str(root / "big.out"),
                ]
            )
            enc_runs["decrypt"].append(took)
            rss["decrypt"] = max(rss["decrypt"], peak or 0.0)
        with big.open("rb") as a, (root / "big.out").open("rb") as b:
            assert a.read(MB) == b.read(MB), "decrypt did not round-trip"

        best = {k: min(v) for k, v in {**hashing, **cli}.items()}
        start_best = min(startup)
        result = {
            "machine": {
                "cores": _cores(),
                "python": platform.python_version(),
                "platform": platform.platform(),
            },
            "model": {
                "bytes": nbytes,
                "files": len(paths),
                "shards_mb": [int(s * scale) for s in SHARD_MB],
            },
            "rounds": rounds,
            "hashing": {k: summary(v, nbytes) for k, v in hashing.items()},
            "cli": {k: summary(v) for k, v in cli.items()},
            "encryption": {
                "file_bytes": big_bytes,
                **{
                    k: {
                        **summary(v, big_bytes),
                        "peak_rss_mb": round(rss[k], 1),
                        "gb_per_s_excluding_startup": round(
                            big_bytes / (min(v) - start_best) / 1e9, 3
                        ),
                    }
                    for k, v in enc_runs.items()
                },
                "cli_startup_s": round(start_best, 3),
            },
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
                "verify_over_sign": round(best["bastion_verify"] / best["bastion_sign"], 3),
            },
        }
        ratios = result["ratios"]
        result["targets"] = {
            "sha256 >= 0.9x hashlib parallel": ratios["sha256_vs_hashlib_parallel"] >= 0.9,
            "blake3 >= 0.9x blake3 package": ratios["blake3_vs_blake3_package"] >= 0.9,
            "bastion sign >= 1.5x faster than model_signing sign key": ratios[
                "sign_speedup_vs_model_signing"
            ]
            >= 1.5,
            "bastion verify <= 1.05x bastion sign": ratios["verify_over_sign"] <= 1.05,
            "encrypt >= 1 GB/s": result["encryption"]["encrypt"]["best_gb_per_s"] >= 1.0,
            "decrypt >= 1 GB/s": result["encryption"]["decrypt"]["best_gb_per_s"] >= 1.0,
            "encrypt peak RSS <= 100 MB": result["encryption"]["encrypt"]["peak_rss_mb"] <= 100,
            "decrypt peak RSS <= 100 MB": result["encryption"]["decrypt"]["peak_rss_mb"] <= 100,
        }
        if not opts.quick:
            RESULTS.parent.mkdir(parents=True, exist_ok=True)
            RESULTS.write_text(json.dumps(result, indent=2) + "\n")
        print(
            json.dumps(
                {
                    "ratios": result["ratios"],
                    "targets": result["targets"],
                    "encryption": result["encryption"],
                },
                indent=2,
            )
        )
    finally:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
