"""The router's environment, read once per container into a typed, validated object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from house_prices.schema import DEFAULT_MAX_HOUSES_PER_REQUEST
from house_prices.settings import EnvReader


@dataclass(frozen=True)
class RouterSettings:
    endpoint_name: str
    registry_table: str
    # 0 switches the cache off (the local stack wants promotions visible at once).
    live_model_cache_seconds: int = field(default=10, metadata={"minimum": 0})
    max_houses_per_request: int = DEFAULT_MAX_HOUSES_PER_REQUEST
    endpoint_connect_timeout_seconds: int = 1
    endpoint_read_timeout_seconds: int = 8
    endpoint_max_attempts: int = 2
    registry_connect_timeout_seconds: int = 1
    registry_read_timeout_seconds: int = 1
    registry_max_attempts: int = 2

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> RouterSettings:
        """Read every variable (default: the process environment) and raise one SettingsError naming each bad one.

        An int field's variable is its name upper-cased, so a new setting is one line. Int fields all
        have defaults (the required settings are the strings); a minimum is 1 unless the field's
        metadata says otherwise.
        """
        env = EnvReader(environ)
        endpoint_name = env.required("ENDPOINT_NAME")
        registry_table = env.required("REGISTRY_TABLE")
        integers = {
            f.name: env.integer(f.name.upper(), f.default, minimum=f.metadata.get("minimum", 1))
            for f in fields(cls)
            if isinstance(f.default, int)
        }
        env.check("router")
        return cls(endpoint_name=endpoint_name, registry_table=registry_table, **integers)
