"""Adapters over AWS clients; they raise only house_prices.errors exceptions."""
