"""`bastion serve`: a secure gateway in front of any model Bastion can load."""

from bastion.gateway.app import Gateway, create_app
from bastion.gateway.chain import Chain, Context, Rejected, Stage
from bastion.gateway.config import ServeConfig, load_serve_config

__all__ = [
    "Chain",
    "Context",
    "Gateway",
    "Rejected",
    "ServeConfig",
    "Stage",
    "create_app",
    "load_serve_config",
]
