"""ModelStore: LRU accounting, leases, single-flight loads, ModelNotReady and Disabled caching, with fake loaders."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from endpoint.errors import ContainerError, ModelNotReady
from endpoint.metrics import EndpointMetrics
from endpoint.store import Loaded, ModelStore


class FakeLoader:
    """Counts calls per model; optional per-call delay and failure."""

    def __init__(self, sizes: dict[str, int] | None = None, delay: float = 0.0, fail: set[str] | None = None) -> None:
        self.sizes = sizes or {}
        self.delay = delay
        self.fail = fail or set()
        self.calls: dict[str, int] = {}
        self.lock = threading.Lock()
        self.active = 0
        self.max_active = 0

    def __call__(self, name: str) -> Loaded[str]:
        with self.lock:
            self.calls[name] = self.calls.get(name, 0) + 1
            self.active += 1
            self.max_active = max(self.max_active, self.active)
        try:
            time.sleep(self.delay)
            if name in self.fail:
                raise ContainerError(f"cannot load {name}")
            return Loaded(value=f"model:{name}:{self.calls[name]}", size_bytes=self.sizes.get(name, 10))
        finally:
            with self.lock:
                self.active -= 1


class Releases:
    def __init__(self) -> None:
        self.count = 0

    def __call__(self) -> None:
        self.count += 1


@pytest.fixture
def executor() -> Iterator[ThreadPoolExecutor]:
    pool = ThreadPoolExecutor(max_workers=4)
    yield pool
    pool.shutdown(wait=True)


def make_store(loader: Callable[[str], Loaded[Any]], executor: ThreadPoolExecutor, **options: Any) -> ModelStore[Any]:
    options.setdefault("release", Releases())
    return ModelStore(loader, executor, EndpointMetrics(), **options)


async def use(store: ModelStore[Any], name: str) -> Any:
    async with store.lease(name) as lease:
        return lease.value


def test_count_bound_evicts_least_recently_used(executor: ThreadPoolExecutor) -> None:
    # Given a store for two models
    release = Releases()
    store = make_store(FakeLoader(), executor, max_models=2, release=release)

    async def scenario() -> list[str]:
        await use(store, "a")
        await use(store, "b")
        await use(store, "a")  # a is now more recent than b
        await use(store, "c")  # When a third model arrives
        await store.drain()
        return store.loaded_names

    # Then the least recently used (b) is gone, and the unload released memory
    assert asyncio.run(scenario()) == ["a", "c"]
    assert release.count == 1


def test_byte_bound_uses_measured_sizes(executor: ThreadPoolExecutor) -> None:
    # Given models measured at 40, 40, 30 bytes and a 100-byte budget (no count bound)
    store = make_store(FakeLoader(sizes={"a": 40, "b": 40, "c": 30}), executor, max_bytes=100)

    async def scenario() -> tuple[list[str], int]:
        for name in ("a", "b", "c"):
            await use(store, name)
        return store.loaded_names, store.loaded_bytes

    # Then the oldest is evicted until the measured total fits
    names, total = asyncio.run(scenario())
    assert names == ["b", "c"]
    assert total == 70


def test_leased_model_is_never_evicted(executor: ThreadPoolExecutor) -> None:
    # Given a one-model store whose only model is in use by a running request
    store = make_store(FakeLoader(), executor, max_models=1)

    async def scenario() -> tuple[list[str], list[str], list[str]]:
        held = await store.acquire("a")
        async with store.lease("b"):  # When another model is needed meanwhile
            while_held = store.loaded_names
        # b was the only unleased entry once its request ended, so it went first
        held.release()  # and the first request finishes
        await store.drain()
        after = store.loaded_names
        await use(store, "c")
        return while_held, after, store.loaded_names

    while_held, after_release, later = asyncio.run(scenario())
    # Then the leased model survived (the cache ran over its bound) and was evicted only once released
    assert while_held == ["a", "b"]
    assert after_release == ["a"]
    assert later == ["c"]


def test_concurrent_cold_requests_load_once(executor: ThreadPoolExecutor) -> None:
    # Given a slow loader
    loader = FakeLoader(delay=0.2)
    store = make_store(loader, executor)

    async def scenario() -> tuple[set[Any], int]:
        leases = await asyncio.gather(*(store.acquire("a") for _ in range(50)))
        leased = store.leases_of("a")
        for lease in leases:
            lease.release()
        return {lease.value for lease in leases}, leased

    # When 50 requests arrive before the model is loaded
    values, leased = asyncio.run(scenario())
    # Then exactly one load ran, all share its result, and each holds a lease
    assert loader.calls == {"a": 1}
    assert values == {"model:a:1"}
    assert leased == 50


def test_different_models_load_in_parallel(executor: ThreadPoolExecutor) -> None:
    # Given a loader taking 0.3 s per model
    loader = FakeLoader(delay=0.3)
    store = make_store(loader, executor)

    async def scenario() -> float:
        started = time.perf_counter()
        await asyncio.gather(use(store, "a"), use(store, "b"), use(store, "c"))
        return time.perf_counter() - started

    # When three models are requested at once, Then they load concurrently
    elapsed = asyncio.run(scenario())
    assert loader.max_active == 3
    assert elapsed < 0.75


def test_slow_load_gives_model_not_ready_and_keeps_loading(executor: ThreadPoolExecutor) -> None:
    # Given a load slower than the wait limit
    loader = FakeLoader(delay=0.3)
    store = make_store(loader, executor, wait_seconds=0.05)

    async def scenario() -> tuple[bool, Any]:
        with pytest.raises(ModelNotReady):
            await store.acquire("a")
        await store.drain()  # the load carries on without any waiter
        async with store.lease("a") as lease:
            return lease.cache_hit, lease.value

    # Then a retry finds the model loaded, without a second load
    hit, value = asyncio.run(scenario())
    assert hit is True
    assert value == "model:a:1"
    assert loader.calls == {"a": 1}
    assert store.leases_of("a") == 0


def test_failed_load_reaches_every_waiter_and_is_not_cached(executor: ThreadPoolExecutor) -> None:
    # Given a model whose load fails
    loader = FakeLoader(delay=0.1, fail={"bad"})
    store = make_store(loader, executor)

    async def scenario() -> list[BaseException | Any]:
        results = await asyncio.gather(*(store.acquire("bad") for _ in range(5)), return_exceptions=True)
        await asyncio.gather(store.acquire("bad"), return_exceptions=True)
        return results

    results = asyncio.run(scenario())
    # Then all concurrent waiters got the error from one load, and the next request tried again
    assert all(isinstance(result, ContainerError) for result in results)
    assert loader.calls == {"bad": 2}
    assert store.loaded_names == []


def test_disabled_cache_loads_per_request_and_unloads(executor: ThreadPoolExecutor) -> None:
    # Given ModelCacheSetting=Disabled
    release = Releases()
    loader = FakeLoader()
    store = make_store(loader, executor, caching=False, release=release)

    async def scenario() -> list[Any]:
        values = [await use(store, "a") for _ in range(3)]
        await store.drain()
        return values

    # Then every request loaded its own copy and nothing stays loaded
    values = asyncio.run(scenario())
    assert values == ["model:a:1", "model:a:2", "model:a:3"]
    assert store.loaded_names == []
    assert release.count == 3


def test_gauges_follow_the_cache(executor: ThreadPoolExecutor) -> None:
    # Given a two-model store with sized models
    metrics = EndpointMetrics()
    store = ModelStore(FakeLoader(sizes={"a": 5, "b": 7, "c": 11}), executor, metrics, max_models=2, release=Releases())

    async def scenario() -> None:
        for name in ("a", "b", "c"):
            await use(store, name)
        await store.drain()

    asyncio.run(scenario())
    # Then LoadedModelCount/LoadedModelBytes describe b and c, and one unload was timed
    registry = metrics.registry
    assert registry.get_sample_value("LoadedModelCount") == 2
    assert registry.get_sample_value("LoadedModelBytes") == 18
    assert registry.get_sample_value("ModelUnloadingTime_count") == 1
    assert registry.get_sample_value("ModelCacheHit_count") == 3
    assert registry.get_sample_value("ModelCacheHit_sum") == 0
