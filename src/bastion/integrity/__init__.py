"""Artifact integrity: sign and verify models, encrypt them at rest, load only what is trusted."""
