"""One error hierarchy; the CLI maps each class to an exit code from one table."""

from __future__ import annotations


class BastionError(Exception):
    """Base of every error Bastion raises on purpose.

    `exit_code` follows the table every command shares: 1 security result,
    2 usage or input error, 3 a `--fail-on` gate tripped.
    """

    exit_code = 2

    def __init__(self, message: str, *, fix: str | None = None) -> None:
        self.message = message
        self.fix = fix
        super().__init__(f"{message} ({fix})" if fix else message)


class UsageError(BastionError):
    """A command or function was called with arguments that cannot work."""


class InputError(BastionError):
    """User-supplied data, files or models are malformed."""


class UnknownModelError(InputError):
    """A model spec names nothing Bastion can load."""


class UnsafeFormatError(InputError):
    """A file format that can run code on load was offered to a loader."""


class ModelOutputError(InputError):
    """A model's outputs are not a valid probability vector."""


class DataError(InputError):
    """A data set has the wrong shape, dtype, or non-finite values."""


class OutputPathError(InputError):
    """An output location cannot be written."""


class ConfigError(InputError):
    """A configuration file or environment variable is invalid."""


class SecurityError(BastionError):
    """A security result: verification failed, a scan or check found something."""

    exit_code = 1


class GateTripped(BastionError):
    """A `--fail-on` gate found a finding at or above its severity."""

    exit_code = 3
