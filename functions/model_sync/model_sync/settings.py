"""Typed settings of the model-sync function, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from house_prices.artifacts import DEFAULT_MAX_UNPACKED_BYTES
from house_prices.naming import DEFAULT_PREFIX, KeyLayout
from model_sync.gate import GatePolicy

DEFAULT_QUALITY_GATE = "not-worse-than-live-by:5"


@dataclass(frozen=True)
class SyncSettings:
    artifact_bucket: str
    layout: KeyLayout
    registry_table: str
    gate: GatePolicy
    max_unpacked_bytes: int = DEFAULT_MAX_UNPACKED_BYTES
    # The endpoint to pre-warm promoted versions on; None turns pre-warming off.
    endpoint_name: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> SyncSettings:
        """Fail at initialisation, naming the variable, rather than on the first event."""

        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                raise ValueError(f"environment variable {name} is required")
            return value

        prefix = environ.get("MODEL_PREFIX", "").strip() or DEFAULT_PREFIX
        try:
            layout = KeyLayout(prefix)
        except ValueError as error:
            raise ValueError(f"MODEL_PREFIX: {error}") from error
        raw_limit = environ.get("MAX_UNPACKED_BYTES", "").strip() or str(DEFAULT_MAX_UNPACKED_BYTES)
        try:
            limit = int(raw_limit)
        except ValueError:
            limit = 0
        if limit <= 0:
            raise ValueError(f"MAX_UNPACKED_BYTES={raw_limit!r} must be a positive integer (bytes)")
        return cls(
            artifact_bucket=required("ARTIFACT_BUCKET"),
            layout=layout,
            registry_table=required("REGISTRY_TABLE"),
            gate=GatePolicy.parse(environ.get("QUALITY_GATE", "").strip() or DEFAULT_QUALITY_GATE),
            endpoint_name=environ.get("ENDPOINT_NAME", "").strip() or None,
            max_unpacked_bytes=limit,
        )
