"""Built-in demo models and data, trained deterministically from data inside scikit-learn."""

from bastion.zoo.registry import ZOO, ZooEntry, build, entry

__all__ = ["ZOO", "ZooEntry", "build", "entry"]
