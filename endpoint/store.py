"""The in-memory model cache: LRU bounded by measured bytes and by count, with leases and single-flight loads.

All bookkeeping runs on the event loop thread (no locks needed); loading and unloading run in a thread
pool. Rules:

* one load per model at a time: concurrent cold requests share one in-flight future;
* different models load in parallel (limited by the load pool);
* an entry leased by a running request is never evicted; eviction picks least-recently-used unleased
  entries until both bounds hold, so the cache may briefly exceed a bound while every entry is in use and
  shrinks back as leases are released;
* a request waits at most ``wait_seconds`` for a load; then it gets ModelNotReady while the load carries on
  (SageMaker's behaviour), so a retry finds the model ready;
* a load still running after ``load_timeout_seconds`` fails its waiters with ``LoadTimeout``; the stuck
  thread cannot be killed, so until it returns every request for that model gets the same error at
  once instead of starting another load that would hang too;
* ``caching=False`` (ModelCacheSetting=Disabled) loads a private copy per request and unloads it afterwards;
* unloading drops the model in a pool thread (reference counting frees it), then asks ``release``
  (``endpoint.memory.Trimmer``: a throttled ``malloc_trim(0)``) to give the pages back to the OS.
  Nothing stop-the-world (``gc.collect()``) runs on the way.

A cache hit is synchronous (``try_acquire``): the request path awaits nothing when its model is loaded.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from endpoint.errors import LoadTimeout, ModelNotReady
from endpoint.memory import release_memory
from endpoint.metrics import EndpointMetrics

T = TypeVar("T")
V = TypeVar("V")
log = logging.getLogger("endpoint.store")


class Background:
    """Work started off the request path (loads, unloads): each future is held until it is done, so that
    :meth:`drain` can wait for all of it."""

    def __init__(self) -> None:
        self._futures: set[asyncio.Future[Any]] = set()

    def track(self, future: asyncio.Future[Any]) -> None:
        self._futures.add(future)
        future.add_done_callback(self._futures.discard)

    async def drain(self) -> None:
        """Wait for everything tracked, including what it starts meanwhile."""
        while self._futures:
            await asyncio.gather(*list(self._futures), return_exceptions=True)


@dataclass(frozen=True)
class Loaded(Generic[T]):
    """What a loader returns: the model and its measured size in bytes."""

    value: T
    size_bytes: int


@dataclass(eq=False, slots=True)
class _Entry(Generic[T]):
    name: str
    value: T
    size_bytes: int
    leases: int = 0
    cached: bool = True
    # Free for the caller to keep per-model statistics in (the endpoint: its recent predict cost).
    cost: float | None = None


@dataclass(eq=False)
class SharedLoad(Generic[V]):
    """One load in flight that concurrent requests for the same model share (single flight).

    ``waiters`` is the number of leases reserved for them: the loader hands the result over with that
    many leases taken, so nothing can evict or unload it between the load finishing and a waiter resuming.
    """

    future: asyncio.Future[V]
    waiters: int = 0

    async def wait(self, timeout: float, release: Callable[[V], None], not_ready: Callable[[], Exception]) -> V:
        """The loaded result, with a lease reserved for this caller; ``not_ready()`` after ``timeout`` seconds
        (the load carries on)."""
        self.waiters += 1
        try:
            return await asyncio.wait_for(asyncio.shield(self.future), timeout=timeout)
        except TimeoutError:
            if self.future.done() and not self.future.exception():
                return self.future.result()
            self.waiters -= 1
            raise not_ready() from None
        except BaseException:
            # Cancelled (client gone) or the load failed: give the reservation back if it was taken.
            if self.future.done() and not self.future.cancelled() and self.future.exception() is None:
                release(self.future.result())
            else:
                self.waiters -= 1
            raise

    def fail(self, error: BaseException) -> None:
        self.future.set_exception(error)
        self.future.exception()  # mark retrieved: the waiters may all have given up


@dataclass(eq=False, slots=True)
class Lease(Generic[T]):
    """A model held for one request; ``release`` exactly once (``ModelStore.lease`` does it for you)."""

    store: ModelStore[T]
    entry: _Entry[T]
    cache_hit: bool
    released: bool = field(default=False)

    @property
    def value(self) -> T:
        return self.entry.value

    @property
    def cost(self) -> float | None:
        return self.entry.cost

    @cost.setter
    def cost(self, value: float | None) -> None:
        self.entry.cost = value

    def release(self) -> None:
        if not self.released:
            self.released = True
            self.store._release(self.entry)


class ModelStore(Generic[T]):
    def __init__(
        self,
        load: Callable[[str], Loaded[T]],
        executor: Executor,
        metrics: EndpointMetrics,
        *,
        max_models: int | None = None,
        max_bytes: int | None = None,
        caching: bool = True,
        wait_seconds: float = 60.0,
        load_timeout_seconds: float | None = None,
        release: Callable[[], Any] = release_memory,
    ) -> None:
        self._load = load
        self._executor = executor
        self._metrics = metrics
        self._max_models = max_models
        self._max_bytes = max_bytes
        self._caching = caching
        self._wait_seconds = wait_seconds
        self._load_timeout = load_timeout_seconds
        self._release_memory = release
        self._entries: OrderedDict[str, _Entry[T]] = OrderedDict()
        self._bytes = 0  # sum of the entries' sizes, kept as they come and go (no per-request sum)
        self._pending: dict[str, SharedLoad[_Entry[T]]] = {}
        # Models whose load outlived the load timeout and is still running: the error their requests get.
        self._stuck: dict[str, LoadTimeout] = {}
        self._transient = 0
        self._background = Background()
        self._closed = False

    # -- introspection (tests, /metrics) ------------------------------------------------------------
    @property
    def loaded_names(self) -> list[str]:
        """Cached model names, least recently used first."""
        return list(self._entries)

    @property
    def loaded_bytes(self) -> int:
        return self._bytes

    def leases_of(self, name: str) -> int:
        entry = self._entries.get(name)
        return entry.leases if entry else 0

    # -- acquiring ----------------------------------------------------------------------------------
    @contextlib.asynccontextmanager
    async def lease(self, name: str) -> AsyncIterator[Lease[T]]:
        lease = await self.acquire(name)
        try:
            yield lease
        finally:
            lease.release()

    def try_acquire(self, name: str) -> Lease[T] | None:
        """A lease on ``name`` if it is loaded (a cache hit, counted), else None: no await on the hot path."""
        entry = self._entries.get(name) if self._caching else None
        if entry is None:
            return None
        entry.leases += 1
        self._entries.move_to_end(name)
        self._metrics.cache_hits += 1
        return Lease(self, entry, cache_hit=True)

    async def acquire(self, name: str) -> Lease[T]:
        if self._closed:
            raise RuntimeError("model store is closed")
        lease = self.try_acquire(name)
        if lease is not None:
            return lease
        started = time.perf_counter()
        if not self._caching:
            return await self._acquire_uncached(name, started)
        self._metrics.cache_misses += 1
        stuck = self._stuck.get(name)
        if stuck is not None:
            raise stuck
        pending = self._pending.get(name)
        if pending is None:
            pending = self._start_load(name)
        entry = await pending.wait(self._wait_seconds, self._release, lambda: self._not_ready(name))
        return self._loaded_lease(entry, started)

    def _start_load(self, name: str) -> SharedLoad[_Entry[T]]:
        loop = asyncio.get_running_loop()
        pending: SharedLoad[_Entry[T]] = SharedLoad(future=loop.create_future())
        self._pending[name] = pending
        task = asyncio.ensure_future(self._run_load(name, pending))
        self._background.track(task)
        return pending

    async def _run_load(self, name: str, pending: SharedLoad[_Entry[T]]) -> None:
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._load, name)
        try:
            try:
                loaded = await asyncio.wait_for(asyncio.shield(future), timeout=self._load_timeout)
            except TimeoutError:
                raise self._timed_out(name, future) from None
        except BaseException as error:
            del self._pending[name]
            pending.fail(error)
            self._metrics.model_load_failures.inc()
            if not isinstance(error, Exception):
                raise
            return
        # From here to set_result nothing awaits, so the hand-over to the waiters is atomic.
        del self._pending[name]
        entry = _Entry(name=name, value=loaded.value, size_bytes=loaded.size_bytes, leases=pending.waiters)
        self._entries[name] = entry
        self._bytes += entry.size_bytes
        self._evict()
        pending.future.set_result(entry)

    def _timed_out(self, name: str, future: asyncio.Future[Loaded[T]]) -> LoadTimeout:
        error = LoadTimeout(f"Model {name} did not finish loading within {self._load_timeout:g} s.")
        self._stuck[name] = error
        log.error("loading %s still runs after %g s; its requests fail until it returns", name, self._load_timeout)

        def returned(done: asyncio.Future[Loaded[T]]) -> None:
            del self._stuck[name]
            self._discard_late(name, done)

        future.add_done_callback(returned)
        return error

    async def _acquire_uncached(self, name: str, started: float) -> Lease[T]:
        self._metrics.cache_misses += 1
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(self._executor, self._load, name)
        try:
            loaded = await asyncio.wait_for(asyncio.shield(future), timeout=self._wait_seconds)
        except TimeoutError:
            # Nobody will use this copy; unload it when it arrives.
            future.add_done_callback(lambda done: self._discard_late(name, done))
            raise self._not_ready(name) from None
        except Exception:
            self._metrics.model_load_failures.inc()
            raise
        entry = _Entry(name=name, value=loaded.value, size_bytes=loaded.size_bytes, leases=1, cached=False)
        self._transient += 1
        self._update_gauges()
        return self._loaded_lease(entry, started)

    def _loaded_lease(self, entry: _Entry[T], started: float) -> Lease[T]:
        self._metrics.model_loading_wait_time.observe(time.perf_counter() - started)
        return Lease(self, entry, cache_hit=False)

    def _not_ready(self, name: str) -> ModelNotReady:
        return ModelNotReady(
            f"Model {name} is still being downloaded or loaded after {self._wait_seconds:g} s; retry later."
        )

    def _discard_late(self, name: str, done: asyncio.Future[Loaded[T]]) -> None:
        if not done.cancelled() and done.exception() is None and not self._closed:
            self._schedule_unload([_Entry(name=name, value=done.result().value, size_bytes=0, cached=False)])

    # -- releasing and evicting ---------------------------------------------------------------------
    def _release(self, entry: _Entry[T]) -> None:
        entry.leases -= 1
        if not entry.cached:
            if entry.leases == 0:
                self._transient -= 1
                self._schedule_unload([entry])
                self._update_gauges()
            return
        # Only over budget (every entry was leased when the last one loaded) is there anything to do.
        if entry.leases == 0 and self._over_budget():
            self._evict()

    def _over_budget(self) -> bool:
        if self._max_models is not None and len(self._entries) > self._max_models:
            return True
        return self._max_bytes is not None and self._bytes > self._max_bytes

    def _evict(self) -> None:
        victims: list[_Entry[T]] = []
        if self._over_budget():
            for name, entry in list(self._entries.items()):  # least recently used first
                if entry.leases > 0:
                    continue
                del self._entries[name]
                self._bytes -= entry.size_bytes
                victims.append(entry)
                if not self._over_budget():
                    break
        if victims:
            log.debug("evicting %s", ", ".join(entry.name for entry in victims))
            self._schedule_unload(victims)
        self._update_gauges()

    def _schedule_unload(self, victims: list[_Entry[T]]) -> None:
        loop = asyncio.get_running_loop()
        names = [entry.name for entry in victims]
        holder = [victims]
        del victims  # the executor job must hold the last references, so the trim can free them

        def unload() -> None:
            started = time.perf_counter()
            for entry in holder.pop():
                entry.value = None  # type: ignore[assignment]
            self._release_memory()
            elapsed = time.perf_counter() - started
            for _ in names:
                self._metrics.model_unloading_time.observe(elapsed / len(names))
                self._metrics.model_unloads.inc()

        self._background.track(loop.run_in_executor(self._executor, unload))

    def _update_gauges(self) -> None:
        self._metrics.loaded_model_count.set(len(self._entries) + self._transient)
        self._metrics.loaded_model_bytes.set(self.loaded_bytes)

    async def drain(self) -> None:
        """Wait for in-flight loads and unloads (tests, shutdown)."""
        await self._background.drain()

    async def close(self) -> None:
        self._closed = True
        await self.drain()
        victims = list(self._entries.values())
        self._entries.clear()
        self._bytes = 0
        if victims:
            self._schedule_unload(victims)
            await self.drain()
        self._update_gauges()
