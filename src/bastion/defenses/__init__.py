"""Defenses: Model wrappers, or functions that return a newly trained model."""
