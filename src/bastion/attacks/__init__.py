"""Attacks: each takes a Model (or DifferentiableModel), data and parameters.

Each returns a result dataclass of plain metrics and arrays.
"""
