"""Typed settings of the rollouts function, read once from its environment."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from house_prices.settings import EnvReader


@dataclass(frozen=True)
class RolloutSettings:
    registry_table: str
    quality_table: str

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RolloutSettings:
        """One SettingsError naming every bad variable, at initialisation rather than on the first tick."""
        env = EnvReader(environ)
        registry_table = env.required("REGISTRY_TABLE")
        quality_table = env.required("QUALITY_TABLE")
        env.check("rollouts")
        return cls(registry_table=registry_table, quality_table=quality_table)
