"""The router's environment, read once per container into a typed, validated object."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field, fields

from house_prices.feedback_api import DEFAULT_MAX_LABELS_PER_REQUEST
from house_prices.schema import DEFAULT_MAX_HOUSES_PER_REQUEST
from house_prices.settings import EnvReader


@dataclass(frozen=True)
class RouterSettings:
    endpoint_name: str
    registry_table: str
    # The live item (live version and any rollout) is cached this long per city. 4 s keeps the target
    # "a promotion, rollback or weight change reaches every router within 5 s" with a second to spare
    # for the GetItem itself (docs/rollouts.md, Routing). 0 switches the cache off.
    live_model_cache_seconds: int = field(default=4, metadata={"minimum": 0})
    max_houses_per_request: int = DEFAULT_MAX_HOUSES_PER_REQUEST
    endpoint_connect_timeout_seconds: int = 1
    endpoint_read_timeout_seconds: int = 8
    endpoint_max_attempts: int = 2
    registry_connect_timeout_seconds: int = 1
    registry_read_timeout_seconds: int = 1
    registry_max_attempts: int = 2
    # Share of predictions recorded (capture lines on the log stream; docs/quality.md): 1 all, 0 none.
    capture_sample_rate: float = 1.0
    # POST /feedback (docs/quality.md): the queue its labels go to (None answers 503), the window in which
    # a prediction may be labelled, the labels per request; GET /locations/{city} reads QUALITY_TABLE.
    feedback_queue_url: str | None = None
    label_retention_days: int = 365
    max_labels_per_request: int = DEFAULT_MAX_LABELS_PER_REQUEST
    quality_table: str | None = None

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
        capture_sample_rate = env.parsed("CAPTURE_SAMPLE_RATE", parse_sample_rate, "1.0")
        feedback_queue_url = env.optional("FEEDBACK_QUEUE_URL")
        quality_table = env.optional("QUALITY_TABLE")
        env.check("router")
        return cls(
            endpoint_name=endpoint_name,
            registry_table=registry_table,
            capture_sample_rate=capture_sample_rate,
            feedback_queue_url=feedback_queue_url,
            quality_table=quality_table,
            **integers,
        )


def parse_sample_rate(text: str) -> float:
    """A share between 0 and 1 inclusive, e.g. ``1``, ``0.05``."""
    try:
        rate = float(text)
    except ValueError:
        raise ValueError(f"must be a number between 0 and 1, got {text!r}") from None
    if not (math.isfinite(rate) and 0.0 <= rate <= 1.0):
        raise ValueError(f"must be between 0 and 1, got {text!r}")
    return rate
