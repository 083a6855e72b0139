"""The defence stages by name, merged into the gateway's `STAGES`."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bastion.gateway.detect import Detect
from bastion.gateway.incidents import Enforce
from bastion.gateway.output import OutputDefence, Watermark
from bastion.gateway.routing import DefendRoute

if TYPE_CHECKING:
    from collections.abc import Callable

    from bastion.gateway.app import Gateway
    from bastion.gateway.chain import Stage

DEFENCE_STAGES: dict[str, Callable[[Gateway], Stage]] = {
    "enforce": Enforce,
    "defend_route": DefendRoute,
    "detect": Detect,
    "output_defence": OutputDefence,
    "watermark": Watermark,
}

RECOMMENDED_STAGES = [
    "ip_limit",
    "authenticate",
    "key_limit",
    "validate",
    "enforce",
    "defend_route",
    "predict",
    "detect",
    "output_defence",
    "watermark",
]
