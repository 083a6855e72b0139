"""Contracts shared by every capability: models, data, findings, errors, configuration."""
