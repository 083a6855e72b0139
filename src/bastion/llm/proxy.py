"""The guard proxy: an OpenAI-compatible `/v1/chat/completions` in front of an upstream.

Mounted on the gateway app (`install(app, settings)`), it reuses the gateway's chain: IP
limit, API-key authentication, key limit, audit and metrics. Per request:

1. the body is read within a size cap and validated (messages with string or text-part content);
2. user messages are scanned as the prompt, tool/function messages and earlier user turns as
   documents (`scan_prompt`); a flagged prompt is blocked (403), held for review (202, see
   below) or let through, by policy; PII is redacted with placeholders, or blocks, by policy;
3. the request is forwarded (timeout; a down, slow or malformed upstream gives 502 / 504);
4. the output is scanned (`scan_output`: canaries, system-prompt text, secrets, optional judge
   endpoint); a leak is cut and the choice ends with `finish_reason: "content_filter"`.
   Streams are scanned in windows: text is released only after the text so far scanned clean,
   and a tail is held back so a marker split across chunks is never half-sent.

Held requests wait in a bounded review queue in the gateway's shared store (SQLite or
PostgreSQL, so every worker and replica sees it and it survives restarts; see `ReviewQueue`):
operators list, approve or reject them (`/admin/llm/reviews`); items expire after
`review_ttl_seconds`. The client polls
`GET /v1/reviews/{id}`: 202 pending, 200 with the completion once approved, 403 rejected,
410 expired.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Literal

from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field

from bastion.llm import pii
from bastion.llm.scan import scan_output, scan_prompt

_DOCUMENT_ROLES = ("tool", "function")
_HELD_LABELS = ("injection", "unscannable")  # verdicts `on_injection` blocks or holds for review
_REFUSAL = "[removed by Bastion: the response leaked protected content]"
_INLINE_CHECK_CHARS = 1_000  # outputs up to this size (about 1 ms) are checked on the event loop


class ProxySettings(BaseModel):
    """Policy and upstream settings of the guard proxy."""

    model_config = ConfigDict(extra="forbid")

    upstream: str = Field(description="base URL; requests go to {upstream}/v1/chat/completions")
    upstream_api_key: str | None = None
    timeout_seconds: float = Field(30.0, gt=0)
    max_body_bytes: int = Field(1024 * 1024, ge=1024)
    on_injection: Literal["block", "review", "allow"] = "block"
    on_pii: Literal["allow", "redact", "block"] = "redact"
    on_leak: Literal["block", "allow"] = "block"
    canaries: list[str] = Field(default_factory=list)
    review_ttl_seconds: float = Field(3600.0, gt=0)
    review_max_items: int = Field(1000, ge=1)
    stream_window_chars: int = Field(200, ge=16)
    judge_url: str | None = None
    judge_threshold: float = Field(0.5, ge=0, le=1)
    judge_timeout_seconds: float = Field(5.0, gt=0)
    judge_fail_closed: bool = False


@dataclass
class Held:
    """A request waiting for a human decision (its body stays sealed in the store)."""

    review_id: str
    tenant: str
    key_id: str | None
    verdict: dict[str, Any]
    created: float
    expires: float
    status: str = "pending"
    decided_by: str | None = None

    def public(self, now: float) -> dict[str, Any]:
        return {
            "id": self.review_id,
            "status": self.status_at(now),
            "created": self.created,
            "expires": self.expires,
            "key_id": self.key_id,
            "verdict": self.verdict,
            "decided_by": self.decided_by,
        }

    def status_at(self, now: float) -> str:
        return "expired" if self.status == "pending" and now >= self.expires else self.status


class ReviewQueue:
    """Bounded, expiring queue of held requests in the gateway's shared store.

    Every worker and replica on the same store (SQLite file, PostgreSQL) sees one queue, and
    held requests survive a restart. Each request body and its PII mapping are sealed with
    AES-GCM under a key derived from the server secret (the review id is the associated
    data), so the store never holds prompts or redacted values in clear. Decisions and
    delivery are conditional updates: two reviewers or two pollers on different replicas
    cannot both win. Items are purged `ttl` after they expire (so a client still learns
    "expired"); at most `max_items` are kept.
    """

    def __init__(self, engine: Any, secret: bytes, ttl: float, max_items: int) -> None:
        import hashlib
        import hmac

        self.engine, self.ttl, self.max_items = engine, ttl, max_items
        self._key = hmac.new(secret, b"bastion llm reviews v1", hashlib.sha256).digest()

    def _begin(self) -> Any:
        from bastion.gateway.keystore import _Guarded

        return _Guarded(self.engine, begin=True)

    def _seal(self, review_id: str, payload: dict[str, Any]) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        plain = json.dumps(payload, separators=(",", ":")).encode()
        return nonce + AESGCM(self._key).encrypt(nonce, plain, review_id.encode())

    def _unseal(self, review_id: str, blob: bytes) -> dict[str, Any]:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        plain = AESGCM(self._key).decrypt(blob[:12], blob[12:], review_id.encode())
        return dict(json.loads(plain))

    def _purge(self, conn: Any, now: float) -> None:
        from bastion.gateway.store import llm_reviews as t

        conn.execute(t.delete().where(t.c.expires + self.ttl <= now))

    def add(
        self,
        tenant: str,
        key_id: str | None,
        body: dict[str, Any],
        mapping: dict[str, str],
        verdict: dict[str, Any],
    ) -> Held | None:
        """Hold a request; None when the queue is full."""
        from sqlalchemy import func, select, text

        from bastion.gateway.store import llm_reviews as t

        now = time.time()
        held = Held(secrets.token_hex(12), tenant, key_id, verdict, now, now + self.ttl)
        sealed = self._seal(held.review_id, {"body": body, "mapping": mapping})
        with self._begin() as conn:
            if conn.dialect.name == "postgresql":  # one adder at a time: the bound is exact
                conn.execute(text(f"LOCK TABLE {t.name} IN SHARE ROW EXCLUSIVE MODE"))
            self._purge(conn, now)  # on SQLite this write takes the database's write lock
            if conn.execute(select(func.count()).select_from(t)).scalar_one() >= self.max_items:
                return None
            conn.execute(
                t.insert().values(
                    review_id=held.review_id,
                    tenant=tenant,
                    key_id=key_id,
                    sealed=sealed,
                    verdict=json.dumps(verdict),
                    created=held.created,
                    expires=held.expires,
                    status=held.status,
                )
            )
        return held

    def get(self, review_id: str, tenant: str) -> Held | None:
        """The tenant's held request with that id, if any."""
        found = self._select(review_id=review_id, tenant=tenant)
        return found[0] if found else None

    def of_tenant(self, tenant: str) -> list[Held]:
        """The tenant's held requests, oldest first (expired ones are purged first)."""
        with self._begin() as conn:
            self._purge(conn, time.time())
        return self._select(tenant=tenant)

    def _select(self, **where: str) -> list[Held]:
        from sqlalchemy import select

        from bastion.gateway.store import llm_reviews as t

        query = select(t.c.review_id, t.c.tenant, t.c.key_id, t.c.verdict, t.c.created)
        query = query.add_columns(t.c.expires, t.c.status, t.c.decided_by)
        for column, value in where.items():
            query = query.where(t.c[column] == value)
        with self._begin() as conn:
            rows = conn.execute(query.order_by(t.c.created, t.c.review_id)).all()
        return [
            Held(
                r.review_id,
                r.tenant,
                r.key_id,
                json.loads(r.verdict),
                r.created,
                r.expires,
                r.status,
                r.decided_by,
            )
            for r in rows
        ]

    def decide(self, review_id: str, tenant: str, decision: str, by: str | None) -> bool:
        """Approve or reject a pending, unexpired request; False if it is not (any longer)."""
        from bastion.gateway.store import llm_reviews as t

        with self._begin() as conn:
            done = conn.execute(
                t.update()
                .where(t.c.review_id == review_id, t.c.tenant == tenant)
                .where(t.c.status == "pending", t.c.expires > time.time())
                .values(status=decision, decided_by=by)
            )
        return bool(done.rowcount == 1)

    def deliver(self, review_id: str, tenant: str) -> tuple[dict[str, Any], dict[str, str]] | None:
        """Claim an approved request for delivery: (body, mapping), or None if another won."""
        from sqlalchemy import select

        from bastion.gateway.store import llm_reviews as t

        mine = (t.c.review_id == review_id, t.c.tenant == tenant)
        with self._begin() as conn:
            claimed = conn.execute(
                t.update().where(*mine, t.c.status == "approved").values(status="delivered")
            )
            if claimed.rowcount != 1:
                return None
            blob = conn.execute(select(t.c.sealed).where(*mine)).scalar_one()
        payload = self._unseal(review_id, blob)
        return payload["body"], payload["mapping"]

    def release(self, review_id: str, tenant: str) -> None:
        """Undo a delivery claim (the upstream failed): the client may poll again."""
        from bastion.gateway.store import llm_reviews as t

        with self._begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.review_id == review_id, t.c.tenant == tenant)
                .where(t.c.status == "delivered")
                .values(status="approved")
            )


# -- message handling ------------------------------------------------------------------------


def _text_of(content: Any) -> str | None:
    """The text of a message content (a string or a list of parts); None if malformed."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        texts = []
        for part in content:
            if not isinstance(part, dict):
                return None
            if part.get("type") == "text":
                if not isinstance(part.get("text"), str):
                    return None
                texts.append(part["text"])
        return "\n".join(texts)
    return None


def _map_text(message: dict[str, Any], fn: Any) -> None:
    """Apply `fn` to every text in a message's content, in place."""
    content = message.get("content")
    if isinstance(content, str):
        message["content"] = fn(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                part["text"] = fn(part["text"])


def split_messages(messages: list[dict[str, Any]]) -> tuple[str, list[str], str]:
    """(latest user text, documents, system prompt) from chat messages."""
    user = [m for m in messages if m.get("role") == "user"]
    prompt = _text_of(user[-1].get("content")) or "" if user else ""
    documents = [_text_of(m.get("content")) or "" for m in user[:-1]]
    documents += [
        _text_of(m.get("content")) or "" for m in messages if m.get("role") in _DOCUMENT_ROLES
    ]
    system = "\n".join(
        _text_of(m.get("content")) or ""
        for m in messages
        if m.get("role") in ("system", "developer")
    )
    return prompt, documents, system


def validate_body(raw: bytes) -> dict[str, Any]:
    """The parsed request, or a `Rejected` naming what is wrong."""
    from bastion.gateway.chain import Rejected
    from bastion.gateway.validation import check_depth

    check_depth(raw, 32)
    try:
        body = json.loads(raw)
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise Rejected(400, "invalid_json", "the body is not JSON (UTF-8)") from None
    if (
        not isinstance(body, dict)
        or not isinstance(body.get("messages"), list)
        or not body["messages"]
    ):
        raise Rejected(422, "invalid_request", "the body needs a non-empty 'messages' list")
    for i, message in enumerate(body["messages"]):
        if not isinstance(message, dict) or not isinstance(message.get("role"), str):
            raise Rejected(422, "invalid_request", f"messages[{i}] needs a 'role' string")
        if _text_of(message.get("content")) is None:
            raise Rejected(
                422, "invalid_request", f"messages[{i}].content must be a string or text parts"
            )
    if "stream" in body and not isinstance(body["stream"], bool):
        raise Rejected(422, "invalid_request", "'stream' must be a boolean")
    return body


# -- the proxy ------------------------------------------------------------------------------


class GuardProxy:
    """State and logic of the proxy: HTTP client, review queue, policy."""

    def __init__(self, settings: ProxySettings, reviews: ReviewQueue) -> None:
        import httpx

        self.settings = settings
        self.reviews = reviews
        self.client = httpx.AsyncClient(
            timeout=httpx.Timeout(settings.timeout_seconds), trust_env=False
        )
        self.url = settings.upstream.rstrip("/") + "/v1/chat/completions"

    async def aclose(self) -> None:
        await self.client.aclose()

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json"}
        if self.settings.upstream_api_key:
            headers["authorization"] = f"Bearer {self.settings.upstream_api_key}"
        return headers

    async def screen(
        self, body: dict[str, Any]
    ) -> tuple[dict[str, Any], dict[str, str], dict[str, Any]]:
        """Scan the prompt and documents; redact PII by policy. Returns (body, mapping, verdict)."""
        from bastion.gateway.chain import Rejected

        prompt, documents, _ = split_messages(body["messages"])
        verdict = await asyncio.to_thread(scan_prompt, prompt, documents)
        codes = [r.code for r in verdict.reasons][:20]
        summary: dict[str, Any] = {
            "label": verdict.label,
            "score": round(verdict.score, 4),
            "reasons": codes,
        }
        if verdict.label in _HELD_LABELS and self.settings.on_injection == "block":
            raise Rejected(
                403,
                "prompt_injection",
                "the prompt was flagged as an injection attempt: " + ", ".join(codes[:5]),
            )
        mapping: dict[str, str] = {}
        if verdict.label == "unscannable" and self.settings.on_pii != "allow":
            raise Rejected(  # fail closed: personal data in its unsearched text would pass
                403, "pii_unscannable", "a message is too long to be searched for personal data"
            )
        if verdict.pii and self.settings.on_pii == "block":
            raise Rejected(403, "pii_in_prompt", "the prompt carries personal data or secrets")
        if verdict.pii and self.settings.on_pii == "redact":
            counters: dict[str, int] = {}

            def redact_text(text: str) -> str:
                red = pii.redact(text)
                out = red.text
                for placeholder, value in red.mapping.items():
                    existing = next((k for k, v in mapping.items() if v == value), None)
                    if existing is None:
                        kind = placeholder.strip("[]").rsplit("_", 1)[0]
                        counters[kind] = counters.get(kind, 0) + 1
                        existing = f"[{kind}_{counters[kind]}]"
                        mapping[existing] = value
                    out = out.replace(placeholder, f"\x00{existing}\x00")
                return out.replace("\x00", "")

            for message in body["messages"]:
                if message.get("role") in ("user", *_DOCUMENT_ROLES):
                    _map_text(message, redact_text)
        return body, mapping, summary

    async def judge(self, text: str) -> float | None:
        """The judge endpoint's score for an output (None when not configured)."""
        if not self.settings.judge_url or not text:
            return None
        try:
            response = await self.client.post(
                self.settings.judge_url,
                json={"text": text[:20000]},
                timeout=self.settings.judge_timeout_seconds,
            )
            score = float(response.json()["score"])
        except Exception:
            return 1.0 if self.settings.judge_fail_closed else None
        return score if 0.0 <= score <= 1.0 else (1.0 if self.settings.judge_fail_closed else None)

    def leak_check(self, text: str, system: str) -> list[str]:
        """Reasons the output leaks (canaries, system prompt, secrets); empty when clean."""
        verdict = scan_output(text, canaries=self.settings.canaries, system_prompt=system or None)
        return [r.code + ": " + r.detail for r in verdict.reasons if r.code.startswith("leak:")]

    async def complete(
        self, body: dict[str, Any], mapping: dict[str, str]
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        """Forward a non-streamed request; scan and (by policy) cut the output."""
        from bastion.gateway.chain import Rejected

        upstream = {**body, "stream": False}
        data = await self._post(upstream)
        choices = data.get("choices") if isinstance(data, dict) else None
        if not isinstance(choices, list):
            raise Rejected(502, "upstream_malformed", "the upstream answer has no 'choices' list")
        _, _, system = split_messages(body["messages"])
        detail: dict[str, Any] = {"leaks": []}
        for choice in choices:
            message = choice.get("message") if isinstance(choice, dict) else None
            if not isinstance(message, dict) or not isinstance(
                message.get("content", ""), str | None
            ):
                raise Rejected(
                    502, "upstream_malformed", "an upstream choice has no message content"
                )
            text = message.get("content") or ""
            if len(text) <= _INLINE_CHECK_CHARS:  # cheaper than a hop to a worker thread
                leaks = self.leak_check(text, system)
            else:
                leaks = await asyncio.to_thread(self.leak_check, text, system)
            score = await self.judge(text)
            if score is not None and score >= self.settings.judge_threshold:
                leaks.append(f"judge: score {score:.2f}")
            if leaks and self.settings.on_leak == "block":
                message["content"] = _REFUSAL
                choice["finish_reason"] = "content_filter"
            elif mapping:
                message["content"] = _restore(text, mapping)
            detail["leaks"].extend(leaks)
        return data, detail

    async def _post(self, body: dict[str, Any]) -> Any:
        import httpx

        from bastion.gateway.chain import Rejected

        try:
            response = await self.client.post(self.url, json=body, headers=self._headers())
        except httpx.TimeoutException:
            raise Rejected(
                504,
                "upstream_timeout",
                f"the upstream did not answer within {self.settings.timeout_seconds}s",
            ) from None
        except httpx.HTTPError as exc:
            raise Rejected(
                502, "upstream_unavailable", f"the upstream is unreachable ({type(exc).__name__})"
            ) from None
        if response.status_code >= 400:
            raise Rejected(502, "upstream_error", f"the upstream answered {response.status_code}")
        if len(response.content) > 16 * 1024 * 1024:
            raise Rejected(502, "upstream_malformed", "the upstream answer is too large")
        try:
            return response.json()
        except ValueError:
            raise Rejected(502, "upstream_malformed", "the upstream answer is not JSON") from None

    async def stream(
        self, body: dict[str, Any], mapping: dict[str, str], detail: dict[str, Any]
    ) -> AsyncIterator[bytes]:
        """Forward a streamed request; release text only after it scanned clean."""
        import httpx

        _, _, system = split_messages(body["messages"])
        window = self.settings.stream_window_chars
        holdback = max(64, 4 * max((len(c) for c in self.settings.canaries), default=16))
        text, released = "", 0
        meta: dict[str, Any] = {
            "id": "chatcmpl-bastion",
            "model": body.get("model", ""),
            "created": int(time.time()),
        }

        def event(content: str | None, finish: str | None = None) -> bytes:
            delta = {"content": content} if content is not None else {}
            chunk = {
                **meta,
                "object": "chat.completion.chunk",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            }
            return b"data: " + json.dumps(chunk).encode() + b"\n\n"

        def leaked(upto: str) -> list[str]:
            reasons = self.leak_check(upto[-50_000:], system)
            return reasons if self.settings.on_leak == "block" else []

        try:
            async with self.client.stream(
                "POST", self.url, json={**body, "stream": True}, headers=self._headers()
            ) as response:
                if response.status_code >= 400:
                    detail["error"] = f"upstream answered {response.status_code}"
                    yield event(None, "error")
                    yield b"data: [DONE]\n\n"
                    return
                scanned = 0
                async for line in response.aiter_lines():
                    if not line.startswith("data:"):
                        continue
                    payload = line[5:].strip()
                    if payload == "[DONE]":
                        break
                    try:
                        chunk = json.loads(payload)
                        piece = chunk["choices"][0].get("delta", {}).get("content") or ""
                        meta.update({k: chunk[k] for k in ("id", "model", "created") if k in chunk})
                    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
                        detail["error"] = "malformed upstream chunk"
                        yield event(None, "error")
                        yield b"data: [DONE]\n\n"
                        return
                    text += piece
                    if len(text) > 4 * 1024 * 1024:
                        detail["error"] = "upstream output too long"
                        break
                    if len(text) - scanned >= window:
                        scanned = len(text)
                        reasons = await asyncio.to_thread(leaked, text)
                        if reasons:
                            detail["leaks"] = reasons
                            yield event(None, "content_filter")
                            yield b"data: [DONE]\n\n"
                            return
                        safe = max(released, len(text) - holdback)
                        if safe > released:
                            yield event(_restore(text[released:safe], mapping))
                            released = safe
        except httpx.TimeoutException:
            detail["error"] = "upstream timeout"
            yield event(None, "error")
            yield b"data: [DONE]\n\n"
            return
        except httpx.HTTPError as exc:
            detail["error"] = f"upstream unavailable ({type(exc).__name__})"
            yield event(None, "error")
            yield b"data: [DONE]\n\n"
            return
        reasons = await asyncio.to_thread(leaked, text)
        score = await self.judge(text)
        if score is not None and score >= self.settings.judge_threshold:
            reasons.append(f"judge: score {score:.2f}")
        if reasons:
            detail["leaks"] = reasons
            yield event(None, "content_filter")
        else:
            if released < len(text):
                yield event(_restore(text[released:], mapping))
            yield event(None, "stop")
        yield b"data: [DONE]\n\n"


def _restore(text: str, mapping: dict[str, str]) -> str:
    for placeholder, value in mapping.items():
        text = text.replace(placeholder, value)
    return text


# -- mounting on the gateway -----------------------------------------------------------------


def guarded_config_schema() -> type[Any]:
    """`ServeConfig` extended with the proxy's optional `[llm]` section."""
    from bastion.gateway.config import ServeConfig

    class GuardedServeConfig(ServeConfig):
        llm: ProxySettings | None = None

    return GuardedServeConfig


GUARDED_FACTORY = "bastion.llm.proxy:guarded_app_from_env"


def guarded_app_from_env() -> Any:
    """uvicorn factory for `bastion serve` with `[llm]` set: the gateway app plus the proxy."""
    from bastion.gateway.app import create_app
    from bastion.gateway.server import config_from_env

    config, state_dir = config_from_env(guarded_config_schema())
    app = create_app(config, state_dir)
    install(app, config.llm)
    return app


def install(app: Any, settings: ProxySettings) -> GuardProxy:
    """Add the proxy's routes to a gateway app built by `bastion.gateway.app.create_app`."""
    from fastapi.responses import JSONResponse, Response, StreamingResponse

    from bastion.gateway.app import context, respond
    from bastion.gateway.chain import Context, Rejected
    from bastion.gateway.keystore import StoreUnavailable
    from bastion.gateway.store import server_secret
    from bastion.gateway.validation import read_limited
    from bastion.llm.embed import require_llm_extra

    require_llm_extra()  # refuse to start, rather than fail the first request
    gw = app.state.gateway
    secret = server_secret(gw.state_dir, gw.config.auth.secret_file)
    reviews = ReviewQueue(gw.engine, secret, settings.review_ttl_seconds, settings.review_max_items)
    proxy = GuardProxy(settings, reviews)
    app.state.llm_proxy = proxy

    def tenant_of(ctx: Context) -> str:
        return ctx.principal.tenant if ctx.principal else "default"

    async def in_store(fn: Any, *args: Any) -> Any:
        """Run a review-queue call off the event loop; an unreachable store is a 503."""
        try:
            return await asyncio.to_thread(fn, *args)
        except StoreUnavailable:
            gw.metrics.store_unavailable.labels(store="reviews").inc()
            raise Rejected(
                503, "store_unavailable", "the review store is unreachable; try again shortly"
            ) from None

    async def _chat(ctx: Context) -> None:
        ctx.body = await read_limited(
            ctx.extra.pop("body_stream"), ctx.headers.get("content-length"), settings.max_body_bytes
        )
        body = validate_body(ctx.body)
        body, mapping, verdict = await proxy.screen(body)
        ctx.extra["audit_detail"] = {"prompt": verdict}
        if verdict["label"] in _HELD_LABELS and settings.on_injection == "review":
            held = await in_store(
                reviews.add,
                tenant_of(ctx),
                ctx.principal.key_id if ctx.principal else None,
                body,
                mapping,
                verdict,
            )
            if held is None:
                raise Rejected(
                    503, "review_queue_full", "the review queue is full; try again later"
                )
            ctx.status = 202
            ctx.result = {"review_id": held.review_id, "status": "pending", "expires": held.expires}
            ctx.extra["audit_detail"]["held"] = held.review_id
            return
        if body.get("stream"):
            ctx.extra["stream"] = (body, mapping)
            return
        data, detail = await proxy.complete(body, mapping)
        ctx.extra["audit_detail"]["output"] = detail
        ctx.result = data

    async def _poll(ctx: Context) -> None:
        review_id, tenant = ctx.extra["review_id"], tenant_of(ctx)
        held = await in_store(reviews.get, review_id, tenant)
        if held is None:
            raise Rejected(404, "review_not_found", "no held request with that id")
        status = held.status_at(time.time())
        if status == "pending":
            ctx.status, ctx.result = 202, held.public(time.time())
            return
        if status == "rejected":
            raise Rejected(403, "review_rejected", "a reviewer rejected this request")
        if status == "expired":
            raise Rejected(410, "review_expired", "nobody reviewed this request in time")
        claimed = (
            await in_store(reviews.deliver, review_id, tenant) if status == "approved" else None
        )
        if claimed is None:
            raise Rejected(
                410, "review_delivered", "this request's completion was already delivered"
            )
        body, mapping = claimed
        try:
            data, detail = await proxy.complete({**body, "stream": False}, mapping)
        except Rejected:
            await in_store(reviews.release, review_id, tenant)  # the client may poll again
            raise
        ctx.extra["audit_detail"] = {"review": review_id, "output": detail}
        ctx.result = data

    async def _list(ctx: Context) -> None:
        now = time.time()
        listed = await in_store(reviews.of_tenant, tenant_of(ctx))
        ctx.result = {"reviews": [h.public(now) for h in listed]}

    async def _decide(ctx: Context) -> None:
        review_id, tenant, decision = ctx.extra["review_id"], tenant_of(ctx), ctx.extra["decision"]
        by = ctx.principal.key_id if ctx.principal else None
        if not await in_store(reviews.decide, review_id, tenant, decision, by):
            held = await in_store(reviews.get, review_id, tenant)
            if held is None:
                raise Rejected(404, "review_not_found", "no held request with that id")
            raise Rejected(
                409, "review_decided", f"the request is already {held.status_at(time.time())}"
            )
        ctx.extra["audit_detail"] = {"review": review_id, "decision": decision}
        ctx.result = (await in_store(reviews.get, review_id, tenant)).public(time.time())

    chat_chain = gw.guarded("llm_chat", _chat)
    poll_chain = gw.guarded("llm_review_poll", _poll)
    list_chain = gw.guarded("llm_reviews_list", _list, role="operator")
    decide_chain = gw.guarded("llm_review_decide", _decide, role="operator")

    @app.post("/v1/chat/completions", tags=["llm"])
    async def chat_completions(request: Request) -> Response:
        ctx = context("llm_chat", request)
        ctx.extra["body_stream"] = request.stream()
        try:
            await chat_chain.run(ctx)
        except Rejected as exc:
            return JSONResponse(exc.body(), status_code=exc.status, headers=exc.headers)
        if "stream" in ctx.extra:
            body, mapping = ctx.extra["stream"]
            detail = ctx.extra["audit_detail"].setdefault("output", {})
            return StreamingResponse(
                proxy.stream(body, mapping, detail), media_type="text/event-stream"
            )
        return JSONResponse(ctx.result, status_code=ctx.status)

    @app.get("/v1/reviews/{review_id}", tags=["llm"])
    async def poll_review(review_id: str, request: Request) -> Response:
        ctx = context("llm_review_poll", request)
        ctx.extra["review_id"] = review_id
        return await respond(poll_chain, ctx)

    @app.get("/admin/llm/reviews", tags=["admin"])
    async def list_reviews(request: Request) -> Response:
        return await respond(list_chain, context("llm_reviews_list", request))

    @app.post("/admin/llm/reviews/{review_id}/approve", tags=["admin"])
    async def approve(review_id: str, request: Request) -> Response:
        ctx = context("llm_review_decide", request)
        ctx.extra.update(review_id=review_id, decision="approved")
        return await respond(decide_chain, ctx)

    @app.post("/admin/llm/reviews/{review_id}/reject", tags=["admin"])
    async def reject(review_id: str, request: Request) -> Response:
        ctx = context("llm_review_decide", request)
        ctx.extra.update(review_id=review_id, decision="rejected")
        return await respond(decide_chain, ctx)

    return proxy


__all__ = ["GuardProxy", "ProxySettings", "ReviewQueue", "install"]
