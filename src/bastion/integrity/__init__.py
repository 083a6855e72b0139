"""Artifact integrity: hash and sign models, verify them, encrypt at rest, load only what is trusted."""
