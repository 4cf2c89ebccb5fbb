"""Measuring loaded models and giving freed memory back to the OS.

Size method: a model that states its own size as an integer ``nbytes`` (a numpy array, a packed
forest: the bytes its arrays hold) is taken at its word, which costs nothing. Otherwise the bytes a
model occupies are estimated by pickling it (protocol 5) into a counting sink, with large buffers
(numpy arrays, including a forest's tree node arrays) passed out-of-band so they are counted but
never copied. For scikit-learn estimators nearly all memory lives in those arrays,
so this tracks the real footprint (see docs/endpoint.md for the measured ratio to RSS growth), unlike
"file size x multiplier", which ignores compression and is the known cause of ModelMesh OOMs.
RSS delta around a load is recorded too, but only as a diagnostic: loads run in parallel threads, so a
process-wide delta cannot be attributed to one model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import pickle
import threading
import time
from collections.abc import Callable
from typing import Any

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")


class _CountingSink:
    """A write-only file that only counts bytes."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        length = memoryview(data).nbytes
        self.size += length
        return length


def pickled_bytes(obj: Any, on_buffer: Callable[[memoryview], None]) -> int:
    """The in-band bytes of ``obj`` pickled (protocol 5) into a counting sink; each large buffer (a numpy
    array's data) goes to ``on_buffer`` as a raw view instead, counted by the caller, never copied."""
    sink = _CountingSink()

    def count_buffer(buffer: pickle.PickleBuffer) -> bool:
        on_buffer(buffer.raw())
        return False  # False = do not serialise in-band; only counted.

    pickle.Pickler(sink, protocol=5, buffer_callback=count_buffer).dump(obj)
    return sink.size


def measure_bytes(obj: Any) -> int:
    """Deep size of ``obj`` in bytes by pickling into a counting sink (arrays counted out-of-band)."""
    buffers: list[int] = []
    in_band = pickled_bytes(obj, lambda view: buffers.append(view.nbytes))
    return in_band + sum(buffers)


def stated_bytes(model: Any) -> int | None:
    """The model's own integer ``nbytes``, if it states one (a numpy array, a packed forest)."""
    stated = getattr(model, "nbytes", None)
    if isinstance(stated, int) and not isinstance(stated, bool) and stated >= 0:
        return stated
    return None


def model_bytes(model: Any) -> int:
    """What a loaded model holds: its own integer ``nbytes`` if it has one, else ``measure_bytes``."""
    stated = stated_bytes(model)
    return measure_bytes(model) if stated is None else stated


def rss_bytes() -> int:
    """Resident set size of this process (Linux /proc; 0 where unavailable)."""
    try:
        with open("/proc/self/statm") as statm:
            return int(statm.read().split()[1]) * _PAGE_SIZE
    except (OSError, ValueError, IndexError):
        return 0


def _load_malloc_trim() -> Any:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        libc = ctypes.CDLL(name)
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None  # not glibc (musl, macOS): nothing to trim
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


_MALLOC_TRIM = _load_malloc_trim()


def release_memory() -> bool:
    """Return freed heap pages to the OS (glibc ``malloc_trim(0)``); whether a trim was possible.

    Without the trim, dropped forests stay in the process (about 1 GB was held after 20 unloads).
    No ``gc.collect()``: models are freed by reference counting (forests hold no reference cycles),
    and a full collection stops every thread, the event loop included, for tens of milliseconds.
    ctypes releases the GIL for the call, so a trim in a worker thread does not stall the loop.
    """
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True


class Trimmer:
    """``release_memory`` at most once per ``interval`` seconds, and always once after the last request.

    Each eviction asks for a trim; under a stream of misses that would be a trim per miss, each walking
    the whole heap. Requests inside the interval are folded into one trim at its end.
    """

    def __init__(self, interval: float = 0.1, release: Callable[[], Any] = release_memory) -> None:
        self._interval = interval
        self._release = release
        self._lock = threading.Lock()
        self._last = 0.0
        self._timer: threading.Timer | None = None

    def __call__(self) -> None:
        with self._lock:
            if self._timer is not None:
                return  # a trim is already due
            wait = self._last + self._interval - time.monotonic()
            if wait > 0:
                self._timer = threading.Timer(wait, self._run)
                self._timer.daemon = True
                self._timer.start()
                return
            self._last = time.monotonic()
        self._release()

    def _run(self) -> None:
        with self._lock:
            self._timer = None
            self._last = time.monotonic()
        self._release()

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = None


def process_tree(pid: int) -> list[int]:
    """``pid`` and every live descendant (Linux ``/proc/PID/task/*/children``); empty if ``pid`` is gone."""
    found: list[int] = []
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        found.append(current)
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as children:
                    pending.extend(int(child) for child in children.read().split())
            except OSError:
                continue
    return found


def pss_bytes(pids: list[int]) -> int:
    """Proportional set size of these processes together: shared pages (a model memory-mapped by several
    workers, the interpreter forked into them) are split among the processes mapping them, so the sum is
    what they take from the machine. 0 where ``/proc/PID/smaps_rollup`` is unavailable."""
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as rollup:
                for line in rollup:
                    if line.startswith("Pss:"):
                        total += int(line.split()[1]) * 1024
                        break
        except (OSError, ValueError, IndexError):
            continue
    return total
