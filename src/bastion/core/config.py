"""Configuration: a TOML file, overridden by `BASTION_SECTION__KEY` environment variables.

Each capability owns one section model; `BastionConfig` gathers them. Values are
validated by pydantic, and unknown keys are refused so a typo never silently
disables a setting.
"""

from __future__ import annotations

import json
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from bastion.core.errors import ConfigError

ENV_PREFIX = "BASTION_"
ENV_NESTING = "__"


class Section(BaseModel):
    """Base of every configuration section: strict about unknown keys."""

    model_config = ConfigDict(extra="forbid")


class AssessConfig(Section):
    """Defaults for `bastion assess`."""

    budget: Literal["quick", "standard", "thorough"] = "standard"
    seed: int = 0
    checks: list[str] | None = None
    evasion_epsilon: float | None = Field(default=None, gt=0)


class BastionConfig(Section):
    """The configuration of the library and CLI commands that read one."""

    assess: AssessConfig = AssessConfig()


S = TypeVar("S", bound=Section)


def _env_overrides(environ: Mapping[str, str], sections: set[str]) -> dict[str, Any]:
    """Nested dict from `BASTION_SECTION__KEY=value` variables for the schema's sections.

    Values parse as JSON when they can (numbers, booleans, lists), else stay strings.
    """
    tree: dict[str, Any] = {}
    for name, raw in environ.items():
        if not name.startswith(ENV_PREFIX) or ENV_NESTING not in name:
            continue
        keys = name[len(ENV_PREFIX) :].lower().split(ENV_NESTING)
        if keys[0] not in sections:
            continue
        try:
            value: Any = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        node = tree
        for key in keys[:-1]:
            node = node.setdefault(key, {})
            if not isinstance(node, dict):
                raise ConfigError(
                    f"environment variable {name} conflicts with another", fix="unset one of them"
                )
        node[keys[-1]] = value
    return tree


def _merge(base: dict[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    merged = dict(base)
    for key, value in over.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


@overload
def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None
) -> BastionConfig: ...


@overload
def load_config(
    path: str | Path | None = None, environ: Mapping[str, str] | None = None, *, schema: type[S]
) -> S: ...


def load_config(
    path: str | Path | None = None,
    environ: Mapping[str, str] | None = None,
    *,
    schema: type[Section] = BastionConfig,
) -> Section:
    """Read `path` (if given), apply environment overrides, validate against `schema`.

    Each service (the CLI, `bastion serve`) passes its own schema, so sections it does
    not know are refused rather than ignored.
    """
    data: dict[str, Any] = {}
    if path is not None:
        p = Path(path)
        try:
            data = tomllib.loads(p.read_text(encoding="utf-8"))
        except FileNotFoundError as exc:
            raise ConfigError(
                f"configuration file not found: {p}", fix="pass an existing TOML file"
            ) from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(
                f"{p} is not valid TOML: {exc}", fix="fix the syntax at that position"
            ) from exc
    env = os.environ if environ is None else environ
    data = _merge(data, _env_overrides(env, set(schema.model_fields)))
    try:
        return schema.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"])
        raise ConfigError(
            f"invalid configuration at '{where}': {first['msg']}", fix="see docs/configuration.md"
        ) from exc
