"""What the e2e suites share besides fixtures: the trained cities and the demo's train-and-publish."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console

from house_prices import schema
from local.demo import train_and_publish
from local.stack import LocalStack

CITIES = ("Chicago_IL", "Dallas_TX", "Phoenix_AZ")
# The demo's training table and progress bars would only clutter pytest's captured output.
QUIET = Console(quiet=True)


def train(stack: LocalStack, cities: tuple[str, ...], work_dir: Path, **options: Any) -> dict[str, str]:
    """Train and publish as `make demo` does (real train.py processes); returns each city's artifact key."""
    keys = train_and_publish(stack, cities, QUIET, work_dir, progress=False, workers=2, **options)
    return {city: city_keys[-1] for city, city_keys in keys.items()}


def houses(city: str, n: int, seed: int) -> list[dict[str, float]]:
    from training.data import generate_houses

    return [schema.house_from_row(row) for row in generate_houses(city, n, seed)[:, 1:]]
