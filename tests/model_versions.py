"""One way for tests to make a registry record (``ModelVersion``), with keys laid out as model-sync lays them."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from house_prices.naming import KeyLayout
from house_prices.registry import ModelVersion, Status

CREATED_AT = "2026-11-25T04:00:00+00:00"


def model_version(
    city: str,
    version: str,
    status: Status = "standby",
    *,
    metrics: Mapping[str, Any] | None = None,
    reason: str = "",
    prefix: str = "p",
) -> ModelVersion:
    """``city``'s ``version`` as model-sync records it: the MME key, the training job's output key, and a
    sha256 that begins with the version's digest, as ``naming.make_version`` derives it."""
    layout = KeyLayout(prefix)
    return ModelVersion(
        city=city,
        version=version,
        status=status,
        artifact_key=layout.mme_key(city, version),
        source_key=layout.training_output_key(city, "job"),
        sha256=version[-8:] * 8,
        created_at=CREATED_AT,
        metrics={"r2": 0.9} if metrics is None else dict(metrics),
        reason=reason,
    )
