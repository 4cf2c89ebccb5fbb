"""Shared domain facts for every part of the house-price service (the common Lambda layer)."""
