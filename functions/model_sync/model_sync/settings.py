"""Typed settings of the model-sync function, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from house_prices.artifacts import DEFAULT_MAX_UNPACKED_BYTES
from house_prices.naming import DEFAULT_PREFIX, KeyLayout
from house_prices.settings import EnvReader
from model_sync.gate import GatePolicy
from model_sync.rollout_policy import DEFAULT_ROLLOUT_MAX_DAYS, DEFAULT_ROLLOUT_POLICY, ROLLOUT_OFF, RolloutPolicy

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
    # What a candidate that passed the gate does when its city has a live version (a city's override in the
    # registry wins); "off" promotes it at once, as before rollouts existed.
    rollout: RolloutPolicy = ROLLOUT_OFF
    rollout_max_days: int = DEFAULT_ROLLOUT_MAX_DAYS

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SyncSettings:
        """Fail at initialisation with one SettingsError naming every bad variable, rather than on the first event."""
        env = EnvReader(environ)
        artifact_bucket = env.required("ARTIFACT_BUCKET")
        registry_table = env.required("REGISTRY_TABLE")
        layout = env.parsed("MODEL_PREFIX", KeyLayout, DEFAULT_PREFIX)
        gate = env.parsed("QUALITY_GATE", GatePolicy.parse, DEFAULT_QUALITY_GATE)
        max_unpacked_bytes = env.integer("MAX_UNPACKED_BYTES", DEFAULT_MAX_UNPACKED_BYTES)
        endpoint_name = env.optional("ENDPOINT_NAME")
        rollout = env.parsed("ROLLOUT_POLICY", RolloutPolicy.parse, DEFAULT_ROLLOUT_POLICY)
        rollout_max_days = env.integer("ROLLOUT_MAX_DAYS", DEFAULT_ROLLOUT_MAX_DAYS)
        env.check("model-sync")
        return cls(
            artifact_bucket=artifact_bucket,
            layout=layout,
            registry_table=registry_table,
            gate=gate,
            max_unpacked_bytes=max_unpacked_bytes,
            endpoint_name=endpoint_name,
            rollout=rollout,
            rollout_max_days=rollout_max_days,
        )
