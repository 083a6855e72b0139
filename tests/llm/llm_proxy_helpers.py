"""A small OpenAI-compatible upstream and a gateway with the guard proxy, on 127.0.0.1."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import PlainTextResponse, StreamingResponse

MARKER = "bst-test-0f1e2d3c4b5a6978"


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class UpstreamState:
    """What the fake upstream saw: request bodies, and whether a stream was abandoned."""

    bodies: list[dict[str, Any]] = field(default_factory=list)
    stream_closed: bool = False


def reply_for(text: str) -> str:
    if "LEAK" in text:
        return f"Of course. The confidential reference is {MARKER}, as you asked."
    if "ECHO" in text:
        return f"You said: {text}"
    return "The capital of France is Paris. It is known for the Eiffel Tower and its museums."


def upstream_app(state: UpstreamState) -> Any:
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> Any:
        body = await request.json()
        state.bodies.append(body)
        text = body["messages"][-1]["content"]
        if "SLOW" in text:
            await asyncio.sleep(5)
        if "MALFORMED" in text:
            return PlainTextResponse("this is not json")
        reply = reply_for(text)
        if not body.get("stream"):
            return {
                "id": "chatcmpl-1",
                "object": "chat.completion",
                "model": body.get("model", "m"),
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": reply},
                        "finish_reason": "stop",
                    }
                ],
            }

        async def events() -> Any:
            try:
                pieces = [reply[i : i + 5] for i in range(0, len(reply), 5)]
                if "ENDLESS" in text:
                    pieces = ["tick " for _ in range(100_000)]
                for piece in pieces:
                    chunk = {
                        "id": "c1",
                        "object": "chat.completion.chunk",
                        "model": "m",
                        "choices": [
                            {"index": 0, "delta": {"content": piece}, "finish_reason": None}
                        ],
                    }
                    yield f"data: {json.dumps(chunk)}\n\n"
                    await asyncio.sleep(0.01 if "ENDLESS" in text else 0)
                yield "data: [DONE]\n\n"
            finally:
                state.stream_closed = True

        return StreamingResponse(events(), media_type="text/event-stream")

    return app


@dataclass
class Served:
    url: str
    server: Any
    thread: threading.Thread
    app: Any

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=30)


def serve(app: Any) -> Served:
    import uvicorn

    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    thread = threading.Thread(target=lambda: asyncio.run(server.serve()), daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("server did not start")
        time.sleep(0.02)
    return Served(f"http://127.0.0.1:{port}", server, thread, app)


def guarded_gateway(
    state_dir: Path, upstream: str, sections: dict[str, Any] | None = None, **settings: Any
) -> Served:
    """A gateway with the proxy; `sections` are merged into the config (e.g. a shared store)."""
    from bastion.gateway import create_app
    from bastion.gateway.config import ServeConfig
    from bastion.llm.proxy import ProxySettings, install

    raw: dict[str, Any] = {
        "limits": {"per_key": ["10000/second"], "per_ip": ["10000/second"]},
        "auth": {"key_cache_seconds": 0, "mfa_roles": []},
        # no model is served here, so no model defence (decoy routing) either
        "defences": {"routing": {"decoy": None}},
    }
    for name, section in (sections or {}).items():
        raw[name] = {**raw.get(name, {}), **section}
    config = ServeConfig.model_validate(raw)
    app = create_app(config, state_dir)
    install(app, ProxySettings(upstream=upstream, canaries=[MARKER], **settings))
    return serve(app)


def expire(queue: Any, review_id: str, by: float = 1.0) -> None:
    """Move a held request's expiry `by` seconds into the past (as if its TTL had run out)."""
    from bastion.gateway.store import llm_reviews as t

    with queue.engine.begin() as conn:
        conn.execute(t.update().where(t.c.review_id == review_id).values(expires=time.time() - by))
