"""`bastion attack-sim`: benign clients and attackers against a live gateway, per configuration.

A gateway is started on 127.0.0.1 (uvicorn in a thread, fresh state directory) once per
defence configuration. Benign clients replay test data; attackers run each extraction strategy
and the black-box evasion attacks (Square, HopSkipJump) through the HTTP `Model` adapter, as
any API client would. Afterwards the gateway's incident book tells after how many queries each
key was flagged; clones are scored against the real model on the test data.
"""

from __future__ import annotations

import asyncio
import socket
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from bastion.attacks.clone import CloneSettings
from bastion.attacks.extraction import STRATEGIES
from bastion.core.errors import UsageError

EVASION = ("square", "hopskipjump")
DETECT_STAGES = [
    "authenticate",
    "validate",
    "enforce",
    "defend_route",
    "predict",
    "detect",
    "output_defence",
    "watermark",
]
# DAWN alters 0.45% of answers; the honest control sample (5%, only logged) is what a two-class
# ownership test compares the suspect's disagreements against
WATERMARK = {"enabled": True, "fraction": 0.0045, "control_fraction": 0.05}
CONFIGS: dict[str, dict[str, Any]] = {
    "undefended": {"stages": ["authenticate", "validate", "route", "predict"], "defences": {}},
    "detect-only": {
        "stages": DETECT_STAGES,
        "defences": {"incidents": {"rules": [{"actions": ["notify"]}]}},
    },
    "watermark-only": {
        "stages": ["authenticate", "validate", "route", "predict", "watermark"],
        "defences": {"watermark": WATERMARK},
    },
    "recommended": {
        "stages": DETECT_STAGES,
        "defences": {
            "incidents": {"rules": [{"actions": ["notify", "decoy"]}]},
            "routing": {"decoy": "perturbed"},
            "watermark": WATERMARK,
        },
    },
}
Progress = Callable[[str], None]
# the DAWN thief queries everything first, then trains its clone to convergence (up to 200
# epochs), as one would to maximise fidelity; independent clone-architecture models train alike
DAWN_CLONE = CloneSettings(epochs=200, max_steps=15000)


@dataclass(frozen=True)
class SimSettings:
    """What to simulate; the defaults are the benchmark's."""

    model: str = "digits-cnn"
    configs: tuple[str, ...] = ("undefended", "detect-only", "recommended")
    benign: int = 50
    benign_queries: int = 100
    budget: int = 2000
    strategies: tuple[str, ...] = STRATEGIES
    evasion: tuple[str, ...] = EVASION
    evasion_queries: int = 200
    attackers: int = 1  # attackers per strategy (distinct seeds), for medians
    dawn_budget: int = 0  # > 0: a DAWN attacker under configurations that watermark
    dawn_independent: int = 10  # independently trained models tested against the pairs
    seed: int = 0


@dataclass
class ConfigResult:
    """The outcome under one defence configuration."""

    config: str
    benign_flagged: int = 0
    benign_accuracy: float = 0.0
    extraction: dict[str, dict[str, Any]] = field(default_factory=dict)
    evasion: dict[str, dict[str, Any]] = field(default_factory=dict)
    dawn: dict[str, Any] = field(default_factory=dict)
    seconds: float = 0.0


class LocalGateway:
    """A gateway on 127.0.0.1 in a background thread."""

    def __init__(self, config: Any, state_dir: Path) -> None:
        import uvicorn

        from bastion.gateway import create_app

        self.app = create_app(config, state_dir)
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            port = int(sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(
            uvicorn.Config(self.app, host="127.0.0.1", port=port, log_level="error", lifespan="on")
        )
        self.thread = threading.Thread(target=lambda: asyncio.run(self.server.serve()), daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 120
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the simulated gateway did not start")
            time.sleep(0.02)

    @property
    def gateway(self) -> Any:
        return self.app.state.gateway

    def key(self, name: str) -> tuple[str, str]:
        raw, info = self.gateway.keys.create(name, "client", "default")
        return raw, info.key_id

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve_config(name: str, model: str, state_dir: Path) -> Any:
    """The gateway configuration of a named defence configuration."""
    from bastion.gateway.config import ServeConfig

    if name not in CONFIGS:
        raise UsageError(
            f"unknown configuration {name!r}", fix=f"choose from: {', '.join(CONFIGS)}"
        )
    spec = CONFIGS[name]
    return ServeConfig.model_validate(
        {
            "limits": {"enabled": False},
            "audit": {"enabled": False},
            "auth": {"key_cache_seconds": 5},
            "chain": {"stages": spec["stages"]},
            "defences": spec["defences"],
            "models": [{"name": model, "spec": f"builtin:{model}"}],
            "server": {"state_dir": str(state_dir)},
        }
    )


def simulate(settings: SimSettings, progress: Progress = lambda _: None) -> dict[str, Any]:
    """Run every configuration; return the JSON-ready report."""
    from bastion.zoo import build, entry

    unknown = [s for s in settings.strategies if s not in STRATEGIES]
    unknown += [e for e in settings.evasion if e not in EVASION]
    if unknown:
        raise UsageError(
            f"unknown attack {unknown[0]!r}", fix=f"choose from {STRATEGIES + EVASION}"
        )
    model = build(settings.model)
    train, test = entry(settings.model).load_data()
    results = []
    for name in settings.configs:
        progress(f"{settings.model}: configuration {name}")
        with tempfile.TemporaryDirectory(prefix="bastion-sim-") as tmp:
            gw = LocalGateway(serve_config(name, settings.model, Path(tmp)), Path(tmp))
            try:
                results.append(_run_config(name, gw, model, train, test, settings, progress))
            finally:
                gw.stop()
    return {
        "model": settings.model,
        "settings": {k: list(v) if isinstance(v, tuple) else v for k, v in vars(settings).items()},
        "configs": [vars(r) for r in results],
    }


def _run_config(
    name: str,
    gw: LocalGateway,
    model: Any,
    train: Any,
    test: Any,
    s: SimSettings,
    progress: Progress,
) -> ConfigResult:
    from bastion.core.adapters.http import HttpModel

    started = time.perf_counter()
    url = f"{gw.url}/v2/models/{s.model}"
    out = ConfigResult(name)
    warm_raw, _ = gw.key("warmup:0")
    HttpModel(url, warm_raw).predict_proba(test.x[:1])  # fits the detectors once
    rng = np.random.default_rng(s.seed)
    keys = [gw.key(f"benign-{i}:0") for i in range(s.benign)]
    picks = [rng.permutation(len(test.x))[: s.benign_queries] for _ in keys]
    sizes = [int(rng.integers(1, 9)) for _ in keys]

    def benign(i: int) -> tuple[int, int]:
        client = HttpModel(url, keys[i][0], batch_size=sizes[i])
        probs = client.predict_proba(test.x[picks[i]])
        return int((probs.argmax(axis=1) == test.labels[picks[i]]).sum()), len(picks[i])

    with ThreadPoolExecutor(8) as pool:
        tallies = list(pool.map(benign, range(s.benign)))
    out.benign_accuracy = sum(c for c, _ in tallies) / max(1, sum(n for _, n in tallies))
    book = _book(gw)
    out.benign_flagged = sum(1 for _, kid in keys if book is not None and book.get(kid))
    progress(f"{name}: benign accuracy {out.benign_accuracy:.3f}, {out.benign_flagged} flagged")
    attacker_x = train.x[rng.permutation(len(train.x))[:100]]
    for strategy in s.strategies:
        runs = [
            _extract(gw, url, model, attacker_x, test, strategy, s, s.seed + a, a)
            for a in range(s.attackers)
        ]
        out.extraction[strategy] = _summarise(runs)
        progress(f"{name}: {strategy} {out.extraction[strategy]}")
    for attack in s.evasion:
        out.evasion[attack] = _evade(gw, url, model, train, test, attack, s)
        progress(f"{name}: {attack} {out.evasion[attack]}")
    stages = CONFIGS[name]["stages"]
    if s.dawn_budget and "watermark" in stages and "detect" not in stages:
        # the watermark alone: the proof must not lean on decoys or detection
        out.dawn = _dawn(gw, url, model, train, test, attacker_x, s, progress)
        progress(f"{name}: DAWN {out.dawn}")
    out.seconds = round(time.perf_counter() - started, 1)
    return out


def _defences(gw: LocalGateway) -> Any:
    from bastion.gateway.defences import defences_of

    return defences_of(gw.gateway)


def _book(gw: LocalGateway) -> Any:
    stages = gw.gateway.config.chain.stages
    return _defences(gw).book if "detect" in stages else None


def _flagged_at(gw: LocalGateway, key_id: str) -> int | None:
    book = _book(gw)
    found = book.get(key_id) if book is not None else None
    return found.queries if found is not None else None


def _summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One attacker's figures, or the median (and each run) of several."""
    if len(runs) == 1:
        return runs[0]
    flags = [r["flagged_at"] for r in runs]
    caught = sorted(f for f in flags if f is not None)
    return {
        "flagged_at": float(np.median(caught)) if len(caught) == len(flags) else None,
        "flagged": f"{len(caught)}/{len(flags)}",
        "fidelity": float(np.median([r["fidelity"] for r in runs])),
        "queries": int(np.median([r["queries"] for r in runs])),
        "runs": runs,
    }


def _extract(
    gw: LocalGateway,
    url: str,
    model: Any,
    attacker_x: np.ndarray,
    test: Any,
    strategy: str,
    s: SimSettings,
    seed: int = 0,
    index: int = 0,
) -> dict[str, Any]:
    from bastion.attacks.clone import one_torch_thread
    from bastion.attacks.extraction import extract, fidelity
    from bastion.core.adapters.http import HttpModel

    raw, key_id = gw.key(f"attacker-{strategy}-{index}:0")
    remote = HttpModel(url, raw, batch_size=64)
    with one_torch_thread():
        result = extract(
            remote,
            attacker_x,
            None,  # no evaluation through the API: the clone is measured offline below
            strategy=strategy,
            budget=s.budget,
            seed=seed,
        )
    return {
        "flagged_at": _flagged_at(gw, key_id),
        "queries": remote.queries,
        "fidelity": round(fidelity(model, result.clone, test.x), 4),
    }


def _evade(
    gw: LocalGateway, url: str, model: Any, train: Any, test: Any, attack: str, s: SimSettings
) -> dict[str, Any]:
    from bastion.attacks.evasion.hopskipjump import hop_skip_jump
    from bastion.attacks.evasion.square import square_attack
    from bastion.core.adapters.http import HttpModel
    from bastion.core.model import predict_labels

    raw, key_id = gw.key(f"attacker-{attack}:0")
    remote = HttpModel(url, raw, batch_size=64)
    x, y = test.x[:1], test.labels[:1]
    lo, hi = train.x.min(axis=0), train.x.max(axis=0)
    if attack == "square":
        eps = 0.15 if model.input_bounds is not None else 0.1
        scale = 1.0 if model.input_bounds is not None else (hi - lo)
        result = square_attack(
            remote,
            x,
            y,
            epsilon=eps * float(np.max(scale)),
            n_queries=s.evasion_queries,
            bounds=(lo, hi),
            seed=s.seed,
        )
    else:
        result = hop_skip_jump(
            remote,
            x,
            y,
            iterations=4,
            init_evals=20,
            max_evals=max(20, s.evasion_queries // 4),
            bounds=(lo, hi),
            seed=s.seed,
        )
    success = float((predict_labels(model, result.x_adv) != y).mean())
    return {"flagged_at": _flagged_at(gw, key_id), "queries": remote.queries, "success": success}


def _dawn(
    gw: LocalGateway,
    url: str,
    model: Any,
    train: Any,
    test: Any,
    attacker_x: np.ndarray,
    s: SimSettings,
    progress: Progress,
) -> dict[str, Any]:
    """Extract a well-trained clone with `dawn_budget` queries, then test it and independently
    trained models against the recorded pairs."""
    from bastion.attacks.clone import one_torch_thread
    from bastion.attacks.extraction import extract, fidelity
    from bastion.core.adapters.http import HttpModel
    from bastion.defenses.dawn import read_pairs, verify_clone

    raw, _ = gw.key("attacker-dawn:0")
    remote = HttpModel(url, raw, batch_size=128)
    with one_torch_thread():
        clone = extract(
            remote,
            attacker_x,
            None,  # no evaluation through the API: the clone is measured offline below
            strategy="random",
            budget=s.dawn_budget,
            seed=s.seed,
            rounds=1,
            settings=DAWN_CLONE,
        ).clone
    pairs = read_pairs(_defences(gw).pairs_file, model.input_shape, s.model)
    if not pairs.watermark.any():  # too little traffic for the keyed fraction to mark any
        return {"queries": remote.queries, "pairs": 0, "controls": len(pairs.x)}
    verdict = verify_clone(clone, pairs)
    others: list[dict[str, Any]] = []
    for seed in range(1, s.dawn_independent + 1):
        with one_torch_thread():
            kind, other = independent_model(s.model, model, train, seed)
        v = verify_clone(other, pairs)
        others.append(
            {"seed": seed, "kind": kind, "matches": v.matches, "log2_p_value": v.log2_p_value}
        )
        progress(f"DAWN independent model {seed} ({kind}): {v.matches}/{v.pairs}")
    return {
        "queries": remote.queries,
        "clone_fidelity": round(fidelity(model, clone, test.x), 4),
        "pairs": verdict.pairs,
        "controls": verdict.controls,
        "clone_matches": verdict.matches,
        "clone_control_disagreements": verdict.disagreements,
        "clone_log2_p_value": verdict.log2_p_value,
        "clone_proven": verdict.proven(),
        "independent": others,
        "independent_best_log2_p_value": min(
            (float(o["log2_p_value"]) for o in others), default=0.0
        ),
        "independent_proven": sum(1 for o in others if float(o["log2_p_value"]) <= -40.0),
    }


def independent_model(name: str, served: Any, train: Any, seed: int) -> tuple[str, Any]:
    """A model built without our answers: trained on a bootstrap resample of the training data
    (so even a deterministic trainer gives a different model), by the zoo's own trainer for odd
    seeds and as the clone architecture on the true labels for even ones (the null closest to
    an extracted clone)."""
    from bastion.attacks.clone import fit_clone, new_clone
    from bastion.zoo import entry

    rows = np.random.default_rng(seed).integers(0, len(train.x), len(train.x))
    sample = train.subset(rows)
    if seed % 2:
        return "zoo-bootstrap", entry(name).train(sample, seed)
    clone = new_clone(served.input_shape, served.n_classes, sample.x, seed, served.input_bounds)
    targets = np.eye(served.n_classes)[sample.labels]
    fit_clone(clone, sample.x, targets, seed, DAWN_CLONE)
    return "clone-architecture-bootstrap", clone
