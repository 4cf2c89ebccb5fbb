"""The router's environment, read once per container into a typed, validated object."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from house_prices.errors import FieldProblem
from house_prices.schema import DEFAULT_MAX_HOUSES_PER_REQUEST


class SettingsError(ValueError):
    """The function is misconfigured; every offending variable is named at once."""

    def __init__(self, problems: list[FieldProblem]) -> None:
        super().__init__("Invalid router settings: " + "; ".join(f"{p.field} {p.problem}" for p in problems))
        self.problems = problems


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
    def from_env(cls, environ: Mapping[str, str]) -> RouterSettings:
        """Read every variable; an int field's variable is its name upper-cased, so a new setting is one line.

        Int fields all have defaults (the required settings are the strings); a minimum is 1 unless the
        field's metadata says otherwise.
        """
        problems: list[FieldProblem] = []

        def required(name: str) -> str:
            value = environ.get(name, "").strip()
            if not value:
                problems.append(FieldProblem(name, "is required"))
            return value

        def integer(name: str, default: int, minimum: int) -> int:
            raw = environ.get(name, "").strip()
            if not raw:
                return default
            try:
                value = int(raw)
            except ValueError:
                problems.append(FieldProblem(name, f"must be an integer, got {raw!r}"))
                return default
            if value < minimum:
                problems.append(FieldProblem(name, f"must be >= {minimum}, got {value}"))
            return value

        endpoint_name = required("ENDPOINT_NAME")
        registry_table = required("REGISTRY_TABLE")
        integers = {
            f.name: integer(f.name.upper(), f.default, minimum=f.metadata.get("minimum", 1))
            for f in fields(cls)
            if isinstance(f.default, int)
        }
        settings = cls(endpoint_name=endpoint_name, registry_table=registry_table, **integers)
        if problems:
            raise SettingsError(problems)
        return settings
