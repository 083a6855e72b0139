"""Adapters from concrete frameworks to the Model contracts."""
