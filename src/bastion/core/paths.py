"""Where Bastion keeps state (keys, audit log, deployments) and caches (zoo models)."""

from __future__ import annotations

import os
from pathlib import Path

import platformdirs

APP = "bastion"


def data_dir(override: str | Path | None = None) -> Path:
    """The state directory: `override`, else `$BASTION_HOME`, else the platform's data dir."""
    if override is not None:
        return Path(override)
    home = os.environ.get("BASTION_HOME")
    return Path(home) if home else Path(platformdirs.user_data_dir(APP))


def cache_dir() -> Path:
    """The cache dir: `$BASTION_CACHE`, else `$BASTION_HOME/cache`, else the platform's."""
    explicit = os.environ.get("BASTION_CACHE")
    if explicit:
        return Path(explicit)
    home = os.environ.get("BASTION_HOME")
    return Path(home) / "cache" if home else Path(platformdirs.user_cache_dir(APP))
