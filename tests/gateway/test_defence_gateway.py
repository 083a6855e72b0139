"""Defence stages in a real gateway on 127.0.0.1: flag, decoy, label-only, suspend, lift; DAWN
pairs; configurations that would silently skip a defence are refused at start."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from gateway_helpers import INFER, MODEL, Running, make_config

from bastion.core.errors import ConfigError
from bastion.core.loading import load_model
from bastion.gateway import create_app
from bastion.gateway.defence_stages import RECOMMENDED_STAGES
from bastion.gateway.defences import defences_of
from bastion.zoo import entry

# No DAWN stage here: it alters a keyed 0.25% of answers (random key per state dir), which
# would make exact output comparisons flaky; DAWN has tests of its own.
STAGES = [s for s in RECOMMENDED_STAGES if s not in ("ip_limit", "key_limit", "watermark")]


def body(x: np.ndarray) -> dict[str, Any]:
    return {
        "inputs": [
            {
                "name": "input",
                "shape": list(x.shape),
                "datatype": "FP32",
                "data": x.ravel().tolist(),
            }
        ]
    }


def ask(client: Any, x: np.ndarray) -> tuple[int, np.ndarray | None, dict[str, Any]]:
    r = client.post(INFER, json=body(x))
    data = r.json()
    out = (
        np.asarray(data["outputs"][0]["data"]).reshape(len(x), -1) if r.status_code == 200 else None
    )
    return r.status_code, out, data


def random_x(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, 1, 8, 8)).astype(np.float32)


def operator(gw: Running) -> Any:
    """A client with a fresh operator key (a TOTP code is accepted once)."""
    raw, totp = gw.mfa_key("operator")
    return gw.client(raw, totp.now())


def test_flagged_key_gets_the_decoy_until_an_operator_lifts_it(serve: Any) -> None:
    gw = serve(
        chain={"stages": STAGES},
        defences={"incidents": {"rules": [{"actions": ["notify", "decoy"]}]}},
    )
    truth = load_model(f"builtin:{MODEL}")
    raw, info = gw.gateway.keys.create("mallory:1", "client", "default")
    client = gw.client(raw)
    status, _, _ = ask(client, random_x(64, 0))  # uniform noise: out of distribution
    assert status == 200
    x = random_x(32, 1)
    status, out, data = ask(client, x)
    assert status == 200 and data["model_version"].endswith("+decoy")
    agree = (out.argmax(axis=1) == truth.predict_proba(x).argmax(axis=1)).mean()
    assert agree == 0.0  # the decoy's relabelling has no fixed point
    listed = operator(gw).get("/admin/incidents").json()["incidents"]
    mine = [i for i in listed if i["key_id"] == info.key_id]
    assert mine and "decoy" in mine[0]["actions"] and mine[0]["queries_at_flag"] <= 64
    closed = operator(gw).delete(f"/admin/incidents/{info.key_id}")
    assert closed.status_code == 200
    natural = entry(MODEL).load_data()[1].x[:8]  # natural inputs after the reset: no new flag
    status, out, data = ask(client, natural)
    assert not data["model_version"].endswith("+decoy")
    np.testing.assert_allclose(out, truth.predict_proba(natural), atol=1e-5)
    assert operator(gw).delete(f"/admin/incidents/{info.key_id}").status_code == 404
    audit = gw.gateway.audit_log
    details = [audit.record(i).get("detail") for i in range(audit.size())]
    assert any(d and d.get("incidents") for d in details)
    assert any(d and d.get("incident_closed") == info.key_id for d in details)
    assert any(d and d.get("route", {}).get("route") == "decoy" for d in details)


def test_label_only_and_revoke_actions(serve: Any) -> None:
    gw = serve(
        chain={"stages": STAGES},
        defences={
            "incidents": {
                "rules": [
                    {"detector": "ood", "actions": ["label-only"]},
                    {"detector": "stateful", "actions": ["revoke"]},
                ]
            }
        },
    )
    raw, _ = gw.gateway.keys.create("eve:1", "client", "default")
    client = gw.client(raw)
    ask(client, random_x(64, 0))
    status, out, _ = ask(client, random_x(4, 1))
    assert status == 200 and set(np.unique(out)) <= {0.0, 1.0}
    base = random_x(1, 2)
    for i in range(30):  # a query-based evasion probe: tiny steps around one input
        status, _, data = ask(client, np.clip(base + 0.002 * i, 0, 1))
        if status != 200:
            break
    assert status == 403 and data["error"]["code"] == "key_suspended"
    honest_raw, _ = gw.gateway.keys.create("alice:1", "client", "default")
    status, out, _ = ask(gw.client(honest_raw), random_x(1, 3))
    assert status == 200


def test_output_defence_for_all_and_dawn_pairs(serve: Any, tmp_path: Path) -> None:
    pairs = tmp_path / "pairs.jsonl"
    gw = serve(
        chain={
            "stages": [
                "authenticate",
                "validate",
                "route",
                "predict",
                "output_defence",
                "watermark",
            ]
        },
        defences={
            "output": {"defence": "top-k", "params": {"k": 1}},
            "watermark": {
                "enabled": True,
                "fraction": 0.004,
                "control_fraction": 0.05,
                "pairs_file": str(pairs),
            },
        },
    )
    client = gw.client(gw.key())
    x = random_x(256, 5)
    status, out, _ = ask(client, x)
    assert status == 200 and ((out > 0).sum(axis=1) == 1).all()
    lines = [json.loads(line) for line in pairs.read_text().splitlines()]
    assert lines and all(rec["model"] == MODEL for rec in lines)
    kinds = {rec["kind"] for rec in lines}
    assert "control" in kinds
    marked = [rec for rec in lines if rec["kind"] == "watermark"]
    for rec in marked:
        row = np.asarray(rec["x"], np.float32)
        i = int(np.flatnonzero(np.abs(x.reshape(256, -1) - row).max(axis=1) == 0)[0])
        assert out[i].argmax() == rec["label"] != rec["victim"]


@pytest.mark.parametrize(
    ("stages", "defences", "message"),
    [
        (
            ["authenticate", "validate", "route", "predict"],
            {"watermark": {"enabled": True}},
            "watermark",
        ),
        (["authenticate", "validate", "route", "predict", "detect"], {}, "defend_route"),
        (
            ["authenticate", "validate", "route", "predict"],
            {"output": {"defence": "rounding"}},
            "output_defence",
        ),
        (
            ["authenticate", "validate", "defend_route", "predict", "detect", "enforce"],
            {"incidents": {"rules": [{"actions": ["revoke"]}]}},
            "before 'predict'",
        ),
        (["authenticate", "validate", "route", "defend_route", "predict"], {}, "both"),
        (
            ["authenticate", "validate", "defend_route", "predict", "detect"],
            {"routing": {"decoy": None}},
            "decoy",
        ),
        (
            ["authenticate", "validate", "route", "predict"],
            {"routing": {"pool": ["a", "b"]}},
            "defend_route",
        ),
    ],
)
def test_configurations_that_would_skip_a_defence_are_refused(
    tmp_path: Path, stages: list[str], defences: dict[str, Any], message: str
) -> None:
    config = make_config(chain={"stages": stages}, defences=defences)
    with pytest.raises(ConfigError, match=message):
        create_app(config, tmp_path)


def test_oversized_or_corrupt_detector_state_does_not_break_requests(serve: Any) -> None:
    gw = serve(chain={"stages": STAGES})
    raw, _ = gw.gateway.keys.create("bob:1", "client", "default")
    client = gw.client(raw)
    status, _, _ = ask(client, random_x(2, 0))
    assert status == 200
    store = defences_of(gw.gateway).store
    for name in list(store.entries):  # type: ignore[attr-defined]
        store.save(name, {"flag": np.array(["x"]), "n": np.full(3, np.inf)})
    status, _, _ = ask(client, random_x(2, 1))
    assert status == 200


def test_concurrent_requests_of_one_key_are_counted_once_and_flagged_once(serve: Any) -> None:
    """Requests of one key observed together in a loop turn: every row counts once, and each
    detector's flag is attributed to exactly one request (and audited there)."""
    import asyncio

    import httpx

    gw = serve(
        chain={"stages": STAGES},
        defences={"incidents": {"rules": [{"actions": ["notify"]}]}},
    )
    raw, info = gw.gateway.keys.create("burst:1", "client", "default")
    bodies = [json.dumps(body(random_x(4, 100 + i))) for i in range(24)]  # noise: flags

    async def send() -> list[httpx.Response]:
        headers = {"Authorization": f"Bearer {raw}"}
        async with httpx.AsyncClient(base_url=gw.url, headers=headers, timeout=60) as client:
            return await asyncio.gather(*(client.post(INFER, content=b) for b in bodies))

    responses = asyncio.run(send())
    assert all(r.status_code == 200 for r in responses)
    store = defences_of(gw.gateway).store
    assert store.load(f"{MODEL}:queries:{info.key_id}")["n"][0] == 96
    assert store.load(f"{MODEL}:stateful:{info.key_id}")["n"][0] == 96
    flags: dict[str, list[int]] = {}
    for r in responses:
        detail = gw.audit(int(r.headers["Bastion-Audit-Index"]))["detail"] or {}
        for incident in detail.get("incidents", []):
            flags.setdefault(incident["detector"], []).append(incident["queries"])
    assert flags, "uniform noise should trip at least one detector"
    assert all(len(at) == 1 and 1 <= at[0] <= 96 for at in flags.values())
