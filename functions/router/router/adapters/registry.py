"""The model registry as the router sees it: read-only, with the live version cached per city."""

from __future__ import annotations

import time
from collections.abc import Callable

from house_prices.errors import UnknownCity
from house_prices.observability import tracer
from house_prices.registry import LiveModel, ModelRegistry, ModelVersion, RolloutEvent
from router.ttl_cache import TtlCache

# Bounds memory when callers probe many (valid but unknown) city names.
MAX_CACHED_CITIES = 1024
# Fails naming.validate_city, so no real city can ever own this key.
HEALTH_PROBE_CITY = "-health-probe-"


class CachedRegistry:
    """Caches ``live_model`` (hits and misses) for ``ttl_seconds``; every other read goes to DynamoDB.

    Misses are cached too, so a flood of requests for an unknown city costs one GetItem per TTL.
    The live item carries the city's rollout, so a promotion, a rollback or a weight change becomes
    visible to a warm container within ``ttl_seconds`` plus one (strongly consistent) GetItem.
    """

    def __init__(
        self, registry: ModelRegistry, ttl_seconds: float, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._registry = registry
        self._live: TtlCache[str, LiveModel | None] = TtlCache(ttl_seconds, MAX_CACHED_CITIES, clock)

    @tracer.capture_method
    def live_model(self, city: str) -> LiveModel:
        hit, cached = self._live.get(city)
        if hit:
            if cached is None:
                raise UnknownCity(city)
            return cached
        try:
            model = self._registry.live_model(city)
        except UnknownCity:
            self._live.put(city, None)
            raise
        self._live.put(city, model)
        return model

    @tracer.capture_method
    def version(self, city: str, version: str) -> ModelVersion:
        return self._registry.version(city, version)

    @tracer.capture_method
    def versions(self, city: str) -> list[ModelVersion]:
        return self._registry.versions(city)

    @tracer.capture_method
    def live_models(self) -> list[LiveModel]:
        return self._registry.live_models()

    @tracer.capture_method
    def rollout_history(self, city: str, limit: int = 50) -> list[RolloutEvent]:
        return self._registry.rollout_history(city, limit)

    @tracer.capture_method
    def ping(self) -> None:
        """One GetItem for a key that can never exist (not a valid city): proves table and permissions."""
        try:
            self._registry.live_model(HEALTH_PROBE_CITY)
        except UnknownCity:
            return

    def clear(self) -> None:
        self._live.clear()
