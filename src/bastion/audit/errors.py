"""Errors of the audit log; the gateway maps `AuditUnavailable` to 503."""

from __future__ import annotations

from bastion.core.errors import BastionError, InputError, SecurityError


class AuditUnavailable(BastionError):
    """The audit store cannot be reached or written: callers must fail closed."""

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        super().__init__(
            message, fix=fix or "check the audit store (file permissions, database server); retry"
        )


class AuditRecordError(InputError):
    """A record cannot be logged: not a JSON object, too large, or it carries a secret."""


class AuditTampered(SecurityError):
    """The stored log does not match its hashes or its signed checkpoints."""

    def __init__(
        self, message: str, *, first_bad_index: int | None = None, fix: str | None = None
    ) -> None:
        super().__init__(
            message,
            fix=fix or "treat the log as compromised; compare with an exported copy or backup",
        )
        self.first_bad_index = first_bad_index
