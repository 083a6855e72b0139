"""The `[defences]` section of the gateway configuration and its start-up consistency check.

A configuration that asks for a defence whose stage is missing from `[chain] stages` (or sits
on the wrong side of `predict`) would silently serve undefended traffic; `check_chain` refuses
it at start with the stage to add.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field

from bastion.core.config import Section
from bastion.core.errors import ConfigError

Action = Literal["notify", "throttle", "label-only", "decoy", "revoke"]
DetectorName = Literal["prada", "coverage", "stateful", "ood"]


def _all_detectors() -> list[DetectorName]:
    return ["prada", "coverage", "stateful", "ood"]


def _notify() -> list[Action]:
    return ["notify"]


ACTIONS: tuple[str, ...] = ("notify", "throttle", "label-only", "decoy", "revoke")
BEFORE_PREDICT = ("enforce", "defend_route")
AFTER_PREDICT = ("detect", "output_defence", "watermark")


class DetectConfig(Section):
    """Detectors per client key; state in memory or Redis."""

    detectors: list[DetectorName] = Field(default_factory=_all_detectors)
    references: dict[str, str] = Field(default_factory=dict)  # model -> builtin:NAME or data file
    state: str = "memory://"
    max_keys: int = Field(default=20_000, ge=1)
    group_by: Literal["key", "name-prefix", "tenant"] = "name-prefix"
    seed: int = 0


class OutputConfig(Section):
    """The output defence and which traffic it applies to."""

    defence: Literal[
        "none", "top-k", "rounding", "label-only", "gaussian", "reverse-sigmoid", "bdpl"
    ] = "none"
    apply_to: Literal["all", "flagged"] = "all"
    params: dict[str, float] = Field(default_factory=dict)


class RoutingConfig(Section):
    """Moving-target pool (variant names) and the decoy for flagged keys."""

    pool: list[str] = Field(default_factory=list)
    decoy: str | None = (
        "perturbed"  # "perturbed" (keyed relabelling of the served model) or a variant
    )


class WatermarkConfig(Section):
    """DAWN response watermarking."""

    enabled: bool = False
    fraction: float = Field(default=0.0025, gt=0, lt=0.005)
    control_fraction: float = Field(default=0.01, ge=0, le=0.1)
    pairs_file: Path | None = None


class Rule(Section):
    """When `detector` ("any" for all) flags a key, take `actions`."""

    detector: Literal["any", "prada", "coverage", "stateful", "ood"] = "any"
    actions: list[Action] = Field(default_factory=_notify)


class IncidentConfig(Section):
    """Alert rules and the settings of their actions."""

    rules: list[Rule] = Field(default_factory=lambda: [Rule(actions=["notify", "decoy"])])
    webhook: str | None = None
    throttle_seconds: float = Field(default=1.0, gt=0)


class DefencesConfig(Section):
    """Serving-time defences: detection, routing, output hardening, watermarking, incidents."""

    detect: DetectConfig = DetectConfig()
    output: OutputConfig = OutputConfig()
    routing: RoutingConfig = RoutingConfig()
    watermark: WatermarkConfig = WatermarkConfig()
    incidents: IncidentConfig = IncidentConfig()


def required_stages(config: DefencesConfig, stages: list[str]) -> dict[str, str]:
    """Stage -> why it is needed, for every defence this configuration turns on."""
    need: dict[str, str] = {}
    actions = {a for rule in config.incidents.rules for a in rule.actions}
    if "detect" in stages:
        if actions & {"throttle", "label-only", "revoke"}:
            need["enforce"] = "incident actions throttle/label-only/revoke are configured"
        if "decoy" in actions:
            need["defend_route"] = "the incident action 'decoy' is configured"
    if config.routing.pool:
        need["defend_route"] = "[defences.routing] sets a moving-target pool"
    if "decoy" in actions and not config.routing.decoy and "detect" in stages:
        need["_decoy"] = "the incident action 'decoy' needs [defences.routing] decoy"
    if config.output.defence != "none" or "label-only" in actions:
        need["output_defence"] = "an output defence (or the label-only action) is configured"
    if config.output.apply_to == "flagged" and config.output.defence != "none":
        need["detect"] = "[defences.output] apply_to = 'flagged' needs detection"
    if config.watermark.enabled:
        need["watermark"] = "[defences.watermark] enabled = true"
    return need


def check_chain(config: DefencesConfig, stages: list[str]) -> None:
    """Refuse a chain that would silently skip a configured defence or order it wrongly."""
    for stage, why in required_stages(config, stages).items():
        if stage == "_decoy":
            raise ConfigError(why, fix='set [defences.routing] decoy = "perturbed" (or a variant)')
        if stage not in stages:
            raise ConfigError(
                f"stage {stage!r} is not in [chain] stages but {why}",
                fix=f"add {stage!r} to [chain] stages (or remove the setting)",
            )
    if "defend_route" in stages and "route" in stages:
        raise ConfigError(
            "[chain] stages lists both 'route' and 'defend_route'",
            fix="keep 'defend_route' (it includes blue-green and canary routing)",
        )
    if "predict" in stages:
        at = stages.index("predict")
        for name in BEFORE_PREDICT:
            if name in stages and stages.index(name) > at:
                raise ConfigError(f"stage {name!r} must come before 'predict'", fix="reorder")
        for name in AFTER_PREDICT:
            if name in stages and stages.index(name) < at:
                raise ConfigError(f"stage {name!r} must come after 'predict'", fix="reorder")
    both = "output_defence" in stages and "watermark" in stages
    if both and stages.index("watermark") < stages.index("output_defence"):
        raise ConfigError(
            "stage 'watermark' must come after 'output_defence'",
            fix="reorder so the watermark is the last change to an answer",
        )
