"""Bastion: secure machine-learning models across their whole life."""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

__all__ = ["__version__", "load_model", "scan"]

TYPE_CHECKING = False  # typing.TYPE_CHECKING, without importing typing (CLI start-up)
if TYPE_CHECKING:
    from typing import Any

    from bastion.core.loading import load_model
    from bastion.integrity.scan import scan

# Public shortcuts, resolved lazily so `import bastion` (and `bastion --version`) stays fast
# and imports no torch.
_LAZY = {"load_model": "bastion.core.loading", "scan": "bastion.integrity.scan"}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")
