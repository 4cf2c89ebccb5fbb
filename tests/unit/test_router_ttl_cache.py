"""TtlCache and CachedRegistry with an injected clock: hits, expiry, bounds, negative caching."""

from __future__ import annotations

import pytest

from house_prices.errors import DependencyFailure, UnknownCity
from house_prices.registry import LiveModel
from router.adapters.registry import HEALTH_PROBE_CITY, CachedRegistry
from router.ttl_cache import TtlCache


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class CountingRegistry:
    """Stands in for house_prices.registry.ModelRegistry; counts DynamoDB reads."""

    def __init__(self, live: dict[str, LiveModel]) -> None:
        self.live = live
        self.reads: list[str] = []
        self.fail = False

    def live_model(self, city: str) -> LiveModel:
        self.reads.append(city)
        if self.fail:
            raise DependencyFailure("DynamoDB GetItem failed: throttled")
        if city not in self.live:
            raise UnknownCity(city)
        return self.live[city]


def live(city: str, version: str = "20261125T040000Z-1a2b3c4d") -> LiveModel:
    return LiveModel(city, version, f"{city}.{version}.tar.gz", "2026-11-25T04:00:00+00:00")


def test_entry_is_served_until_its_ttl_elapses() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.put("a", 1)
    clock.now += 9.999
    assert cache.get("a") == (True, 1)
    clock.now += 0.001
    assert cache.get("a") == (False, None)
    assert len(cache) == 0


def test_zero_ttl_disables_caching() -> None:
    cache: TtlCache[str, int] = TtlCache(0, clock=Clock())
    cache.put("a", 1)
    assert cache.get("a") == (False, None)


def test_cache_is_bounded_expired_first_then_oldest() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, max_entries=3, clock=clock)
    cache.put("old", 0)
    clock.now += 5
    cache.put("b", 1)
    cache.put("c", 2)
    clock.now += 6  # "old" has expired, "b" and "c" have not
    cache.put("d", 3)
    assert [cache.get(k)[0] for k in ("old", "b", "c", "d")] == [False, True, True, True]
    cache.put("e", 4)  # full of live entries: the oldest insertion ("b") goes
    assert [cache.get(k)[0] for k in ("b", "c", "d", "e")] == [False, True, True, True]


def test_overwriting_refreshes_expiry() -> None:
    clock = Clock()
    cache: TtlCache[str, int] = TtlCache(10, clock=clock)
    cache.put("a", 1)
    clock.now += 8
    cache.put("a", 2)
    clock.now += 8
    assert cache.get("a") == (True, 2)


@pytest.mark.parametrize(("ttl", "size"), [(-1, 1), (1, 0)])
def test_invalid_parameters_are_refused(ttl: float, size: int) -> None:
    with pytest.raises(ValueError, match="must be >="):
        TtlCache(ttl, max_entries=size)


def test_registry_reads_dynamodb_once_per_ttl_per_city() -> None:
    # Given a warm container with a 10 s cache
    clock = Clock()
    backing = CountingRegistry({"Chicago_IL": live("Chicago_IL")})
    registry = CachedRegistry(backing, ttl_seconds=10, clock=clock)  # type: ignore[arg-type]
    # When the same city is resolved repeatedly within the TTL, then after it
    first = registry.live_model("Chicago_IL")
    registry.live_model("Chicago_IL")
    backing.live["Chicago_IL"] = live("Chicago_IL", "20261126T040000Z-99999999")
    stale = registry.live_model("Chicago_IL")
    clock.now += 10
    fresh = registry.live_model("Chicago_IL")
    # Then DynamoDB is read once per TTL and a promotion shows up after it
    assert backing.reads == ["Chicago_IL", "Chicago_IL"]
    assert first == stale
    assert fresh.version == "20261126T040000Z-99999999"


def test_unknown_city_is_cached_as_a_miss() -> None:
    clock = Clock()
    backing = CountingRegistry({})
    registry = CachedRegistry(backing, ttl_seconds=10, clock=clock)  # type: ignore[arg-type]
    for _ in range(3):
        with pytest.raises(UnknownCity):
            registry.live_model("Atlantis_XX")
    assert backing.reads == ["Atlantis_XX"]
    # a city that gets its first model becomes visible after the TTL
    backing.live["Atlantis_XX"] = live("Atlantis_XX")
    clock.now += 10
    assert registry.live_model("Atlantis_XX").city == "Atlantis_XX"


def test_dependency_failures_are_not_cached() -> None:
    backing = CountingRegistry({"Chicago_IL": live("Chicago_IL")})
    registry = CachedRegistry(backing, ttl_seconds=10, clock=Clock())  # type: ignore[arg-type]
    backing.fail = True
    with pytest.raises(DependencyFailure):
        registry.live_model("Chicago_IL")
    backing.fail = False
    assert registry.live_model("Chicago_IL").city == "Chicago_IL"
    assert len(backing.reads) == 2


def test_ping_treats_a_missing_probe_key_as_healthy_and_propagates_failures() -> None:
    backing = CountingRegistry({})
    registry = CachedRegistry(backing, ttl_seconds=10, clock=Clock())  # type: ignore[arg-type]
    registry.ping()
    assert backing.reads == [HEALTH_PROBE_CITY]
    backing.fail = True
    with pytest.raises(DependencyFailure):
        registry.ping()
