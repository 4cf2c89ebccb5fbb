"""A tiny bounded TTL cache (the Lambda package carries no cachetools)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class TtlCache(Generic[K, V]):
    """Entries expire ``ttl_seconds`` after they were stored; at most ``max_entries`` are kept.

    ``ttl_seconds == 0`` disables caching. The clock is injectable so tests never sleep.
    """

    def __init__(
        self, ttl_seconds: float, max_entries: int = 1024, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if ttl_seconds < 0:
            raise ValueError("ttl_seconds must be >= 0")
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self._ttl = ttl_seconds
        self._max = max_entries
        self._clock = clock
        self._entries: dict[K, tuple[float, V]] = {}
        # The local HTTP bridge may call the handler from several threads; Lambda never does.
        self._lock = threading.Lock()

    def get(self, key: K) -> tuple[bool, V | None]:
        """Return (hit, value)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return False, None
            expires_at, value = entry
            if self._clock() >= expires_at:
                del self._entries[key]
                return False, None
            return True, value

    def put(self, key: K, value: V) -> None:
        if self._ttl == 0:
            return
        with self._lock:
            now = self._clock()
            self._entries.pop(key, None)
            if len(self._entries) >= self._max:
                self._evict(now)
            self._entries[key] = (now + self._ttl, value)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def _evict(self, now: float) -> None:
        for key in [k for k, (expires_at, _) in self._entries.items() if now >= expires_at]:
            del self._entries[key]
        # Still full: drop the oldest insertions (dicts keep insertion order; every TTL is equal,
        # so the oldest insertion is also the soonest to expire).
        while len(self._entries) >= self._max:
            del self._entries[next(iter(self._entries))]
