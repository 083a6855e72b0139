"""Attacks: each takes a Model (or DifferentiableModel), data and parameters; returns a result dataclass."""
