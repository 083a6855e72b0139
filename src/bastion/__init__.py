"""Bastion: secure machine-learning models across their whole life."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from bastion.core.loading import load_model


def __getattr__(name: str) -> Any:
    # Lazy so that `import bastion` (and `bastion --version`) stays fast and torch-free.
    if name == "load_model":
        from bastion.core.loading import load_model

        return load_model
    raise AttributeError(f"module 'bastion' has no attribute {name!r}")
