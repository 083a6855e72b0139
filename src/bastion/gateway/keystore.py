"""API keys and their TOTP second factor.

A key is `bst_<key id>_<secret>`. Only HMAC-SHA-256(server secret, secret) is stored,
behind the key id so a lookup is one indexed read; the digest is compared in constant
time. Keys are high-entropy, so a slow password hash would only cost throughput.
TOTP secrets are stored encrypted (AES-GCM under a key derived from the server secret).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, insert, select, update
from sqlalchemy.exc import SQLAlchemyError

from bastion.core.errors import InputError, UsageError
from bastion.gateway.store import api_keys, ensure_tables

ROLES = ("client", "operator", "admin")
ROLE_RANK = {role: rank for rank, role in enumerate(ROLES)}
KEY_PREFIX = "bst"
TOTP_STEP = 30
TOTP_WINDOW = 1  # accepted clock drift, in steps
TOTP_EXPIRED_HORIZON = 20  # steps back in which an old code is reported as expired


class StoreUnavailable(Exception):
    """The key store cannot be reached; the gateway fails closed."""


@dataclass(frozen=True)
class Principal:
    """Who a verified key belongs to."""

    key_id: str
    name: str
    role: str
    tenant: str
    mfa_enrolled: bool

    def has_role(self, role: str) -> bool:
        return ROLE_RANK[self.role] >= ROLE_RANK[role]


@dataclass(frozen=True)
class KeyInfo:
    """A key's public record (no digest, no secret)."""

    key_id: str
    name: str
    role: str
    tenant: str
    created_at: float
    expires_at: float | None
    revoked_at: float | None
    mfa_enrolled: bool

    def status(self, now: float) -> str:
        if self.revoked_at is not None and self.revoked_at <= now:
            return "revoked"
        if self.expires_at is not None and self.expires_at <= now:
            return "expired"
        return "active"


class AuthFailure(Exception):
    """A key or TOTP check failed: status, code and message for the HTTP layer."""

    def __init__(
        self, status: int, code: str, message: str, retry_after: int | None = None
    ) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.retry_after = status, code, message, retry_after


def split_key(raw: str) -> tuple[str, str]:
    """(key id, secret) of a well-formed key, else AuthFailure(malformed_key)."""
    parts = raw.split("_", 2)
    if (
        len(parts) != 3
        or parts[0] != KEY_PREFIX
        or len(parts[1]) != 16
        or any(c not in "0123456789abcdef" for c in parts[1])
        or not 32 <= len(parts[2]) <= 64
    ):
        raise AuthFailure(401, "malformed_key", "the API key is not of the form bst_<id>_<secret>")
    return parts[1], parts[2]


class KeyStore:
    """Create, verify, list, revoke and rotate API keys; enrol and check TOTP."""

    def __init__(self, engine: Engine, secret: bytes, cache_seconds: float = 1.0) -> None:
        self.engine = engine
        self._hmac_key = hmac.new(secret, b"bastion api key v1", hashlib.sha256).digest()
        self._totp_key = hmac.new(secret, b"bastion totp v1", hashlib.sha256).digest()
        self.cache_seconds = cache_seconds
        self._cache: dict[str, tuple[float, dict[str, Any] | None]] = {}

    # -- keys -------------------------------------------------------------------------------

    def _digest(self, secret: str) -> str:
        return hmac.new(self._hmac_key, secret.encode(), hashlib.sha256).hexdigest()

    def create(
        self, name: str, role: str, tenant: str = "default", expires_at: float | None = None
    ) -> tuple[str, KeyInfo]:
        """A new key; the returned secret is shown once and never stored."""
        raw, row = self.draft(name, role, tenant, expires_at)
        return raw, self.commit(row)

    def draft(
        self, name: str, role: str, tenant: str = "default", expires_at: float | None = None
    ) -> tuple[str, dict[str, Any]]:
        """A new key and its row, not yet stored (so the change can be audited first)."""
        if role not in ROLES:
            raise UsageError(f"unknown role {role!r}", fix=f"choose one of: {', '.join(ROLES)}")
        if not name.strip() or not tenant.strip():
            raise UsageError(
                "a key needs a non-empty name and tenant", fix="pass --name and --tenant"
            )
        key_id = secrets.token_hex(8)
        secret = secrets.token_urlsafe(32)
        row = {
            "key_id": key_id,
            "digest": self._digest(secret),
            "name": name,
            "role": role,
            "tenant": tenant,
            "created_at": time.time(),
            "expires_at": expires_at,
            "revoked_at": None,
            "mfa_secret": None,
            "mfa_last_step": 0,
            "mfa_failures": 0,
            "mfa_locked_until": 0.0,
        }
        return f"{KEY_PREFIX}_{key_id}_{secret}", row

    def commit(self, row: dict[str, Any]) -> KeyInfo:
        """Store a drafted key row."""
        with self._begin() as conn:
            conn.execute(insert(api_keys).values(**row))
        return _info(row)

    def list(self, tenant: str | None = None) -> list[KeyInfo]:
        query = select(api_keys).order_by(api_keys.c.created_at)
        if tenant is not None:
            query = query.where(api_keys.c.tenant == tenant)
        with self._connect() as conn:
            return [_info(dict(r._mapping)) for r in conn.execute(query)]

    def get(self, key_id: str) -> KeyInfo:
        row = self._fetch(key_id)
        if row is None:
            raise InputError(f"no key with id {key_id}", fix="see `bastion keys list`")
        return _info(row)

    def revoke(self, key_id: str, at: float | None = None) -> KeyInfo:
        self.get(key_id)
        with self._begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(revoked_at=at or time.time())
            )
        self._cache.pop(key_id, None)
        return self.get(key_id)

    def rotate(self, key_id: str, grace_seconds: float = 0.0) -> tuple[str, KeyInfo]:
        """A new key with the same name, role, tenant and TOTP; the old one ends after the grace."""
        raw, row = self.draft_rotation(key_id)
        return raw, self.commit_rotation(key_id, row, grace_seconds)

    def draft_rotation(self, key_id: str) -> tuple[str, dict[str, Any]]:
        """The successor of an active key, not yet stored.

        It inherits the TOTP secret and the last accepted step, so a code already used
        on the old key cannot be replayed on the new one.
        """
        old = self._fetch(key_id)
        if old is None:
            raise InputError(f"no key with id {key_id}", fix="see `bastion keys list`")
        if _info(old).status(time.time()) != "active":
            raise UsageError(
                f"key {key_id} is {_info(old).status(time.time())}", fix="create a new key instead"
            )
        raw, row = self.draft(old["name"], old["role"], old["tenant"], old["expires_at"])
        row["mfa_secret"] = self._reseal(old["mfa_secret"], key_id, row["key_id"])
        row["mfa_last_step"] = old["mfa_last_step"]
        return raw, row

    def commit_rotation(self, key_id: str, row: dict[str, Any], grace_seconds: float) -> KeyInfo:
        """Store the successor and schedule the old key's end, in one transaction."""
        with self._begin() as conn:
            conn.execute(insert(api_keys).values(**row))
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(revoked_at=time.time() + grace_seconds)
            )
        self._cache.pop(key_id, None)
        return self.get(row["key_id"])

    def authenticate(self, raw: str, now: float | None = None) -> Principal:
        """The principal of a valid key, or AuthFailure naming why not."""
        key_id, secret = split_key(raw)
        row = self._cached(key_id)
        digest = self._digest(secret)
        if row is None or not hmac.compare_digest(digest, row["digest"]):
            raise AuthFailure(401, "invalid_key", "the API key is not valid")
        t = time.time() if now is None else now
        if row["revoked_at"] is not None and row["revoked_at"] <= t:
            raise AuthFailure(401, "revoked_key", "the API key has been revoked")
        if row["expires_at"] is not None and row["expires_at"] <= t:
            raise AuthFailure(401, "expired_key", "the API key has expired")
        return Principal(
            key_id, row["name"], row["role"], row["tenant"], row["mfa_secret"] is not None
        )

    # -- TOTP -------------------------------------------------------------------------------

    def enrol_mfa(self, key_id: str) -> str:
        """A fresh TOTP secret (base32) for the key, replacing any previous one."""
        import pyotp

        self.get(key_id)
        secret = pyotp.random_base32(32)
        with self._begin() as conn:
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id)
                .values(
                    mfa_secret=self._seal(secret, key_id),
                    mfa_last_step=0,
                    mfa_failures=0,
                    mfa_locked_until=0.0,
                )
            )
        self._cache.pop(key_id, None)
        return secret

    def verify_totp(
        self, key_id: str, code: str | None, max_failures: int, lockout_seconds: int
    ) -> None:
        """Accept a TOTP code once; refuse missing, wrong, expired, replayed codes; throttle."""
        import pyotp

        now = time.time()
        row = self._fetch(key_id)
        if row is None or row["mfa_secret"] is None:
            raise AuthFailure(
                403, "mfa_not_enrolled", "this action needs a TOTP second factor; none is enrolled"
            )
        if row["mfa_locked_until"] > now:
            wait = int(row["mfa_locked_until"] - now) + 1
            raise AuthFailure(
                429, "mfa_throttled", "too many wrong TOTP codes; wait before retrying", wait
            )
        if not code:
            raise AuthFailure(
                401, "missing_totp", "this action needs a TOTP code in the X-Bastion-OTP header"
            )
        if not (code.isascii() and code.isdigit() and len(code) == 6):
            self._count_failure(key_id, row, max_failures, lockout_seconds, now)
            raise AuthFailure(401, "invalid_totp", "the TOTP code must be 6 ASCII digits")
        totp = pyotp.TOTP(self._unseal(row["mfa_secret"], key_id), interval=TOTP_STEP)
        step = int(now // TOTP_STEP)
        matched = next(
            (
                s
                for s in range(step - TOTP_WINDOW, step + TOTP_WINDOW + 1)
                if hmac.compare_digest(totp.at(s * TOTP_STEP), code)
            ),
            None,
        )
        if matched is None:
            old = any(
                hmac.compare_digest(totp.at(s * TOTP_STEP), code)
                for s in range(step - TOTP_EXPIRED_HORIZON, step - TOTP_WINDOW)
            )
            self._count_failure(key_id, row, max_failures, lockout_seconds, now)
            if old:
                raise AuthFailure(
                    401, "expired_totp", "the TOTP code has expired; use the current one"
                )
            raise AuthFailure(401, "invalid_totp", "the TOTP code is wrong")
        with self._begin() as conn:
            done = conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.mfa_last_step < matched)
                .values(mfa_last_step=matched, mfa_failures=0)
            )
        if done.rowcount != 1:
            raise AuthFailure(
                401, "totp_replayed", "this TOTP code was already used; wait for the next one"
            )

    def _count_failure(
        self, key_id: str, row: dict[str, Any], limit: int, lockout: int, now: float
    ) -> None:
        with self._begin() as conn:
            failures = api_keys.c.mfa_failures + 1
            conn.execute(
                update(api_keys).where(api_keys.c.key_id == key_id).values(mfa_failures=failures)
            )
            conn.execute(
                update(api_keys)
                .where(api_keys.c.key_id == key_id, api_keys.c.mfa_failures >= limit)
                .values(mfa_failures=0, mfa_locked_until=now + lockout)
            )

    def _seal(self, secret: str, key_id: str) -> bytes:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        nonce = secrets.token_bytes(12)
        return nonce + AESGCM(self._totp_key).encrypt(nonce, secret.encode(), key_id.encode())

    def _unseal(self, blob: bytes, key_id: str) -> str:
        from cryptography.hazmat.primitives.ciphers.aead import AESGCM

        return AESGCM(self._totp_key).decrypt(blob[:12], blob[12:], key_id.encode()).decode()

    def _reseal(self, blob: bytes | None, old_id: str, new_id: str) -> bytes | None:
        return None if blob is None else self._seal(self._unseal(blob, old_id), new_id)

    # -- storage ----------------------------------------------------------------------------

    def _cached(self, key_id: str) -> dict[str, Any] | None:
        now = time.monotonic()
        hit = self._cache.get(key_id)
        if hit is not None and now - hit[0] < self.cache_seconds:
            return hit[1]
        row = self._fetch(key_id)
        if self.cache_seconds > 0:
            if len(self._cache) > 100_000:
                self._cache.clear()
            self._cache[key_id] = (now, row)
        return row

    def _fetch(self, key_id: str) -> dict[str, Any] | None:
        with self._connect() as conn:
            row = conn.execute(select(api_keys).where(api_keys.c.key_id == key_id)).first()
        return dict(row._mapping) if row is not None else None

    def _connect(self) -> _Guarded:
        return _Guarded(self.engine, begin=False)

    def _begin(self) -> _Guarded:
        return _Guarded(self.engine, begin=True)


class _Guarded:
    """A connection context that turns database outages into StoreUnavailable."""

    def __init__(self, engine: Engine, begin: bool) -> None:
        self.engine, self.begin = engine, begin
        self._ctx: Any = None

    def __enter__(self) -> Connection:
        try:
            ensure_tables(self.engine)
            self._ctx = self.engine.begin() if self.begin else self.engine.connect()
            conn: Connection = self._ctx.__enter__()
            return conn
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc

    def __exit__(self, *exc_info: Any) -> None:
        try:
            self._ctx.__exit__(*exc_info)
        except SQLAlchemyError as exc:
            raise StoreUnavailable(str(exc).splitlines()[0]) from exc
        error = exc_info[1]
        if isinstance(error, SQLAlchemyError):
            raise StoreUnavailable(str(error).splitlines()[0]) from error


def _info(row: dict[str, Any]) -> KeyInfo:
    return KeyInfo(
        key_id=row["key_id"],
        name=row["name"],
        role=row["role"],
        tenant=row["tenant"],
        created_at=row["created_at"],
        expires_at=row["expires_at"],
        revoked_at=row["revoked_at"],
        mfa_enrolled=row["mfa_secret"] is not None,
    )
