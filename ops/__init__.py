"""Operator CLI for the model registry: list, promote / roll back, publish and sync artifacts."""
