"""Measuring loaded models and giving freed memory back to the OS.

Size method: the bytes a model occupies are estimated by pickling it (protocol 5) into a counting
sink, with large buffers (numpy arrays, including a forest's tree node arrays) passed out-of-band so
they are counted but never copied. For scikit-learn estimators nearly all memory lives in those arrays,
so this tracks the real footprint (see docs/endpoint.md for the measured ratio to RSS growth), unlike
"file size x multiplier", which ignores compression and is the known cause of ModelMesh OOMs.
RSS delta around a load is recorded too, but only as a diagnostic: loads run in parallel threads, so a
process-wide delta cannot be attributed to one model.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import os
import pickle
from typing import Any

_PAGE_SIZE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


class _CountingSink:
    """A write-only file that only counts bytes."""

    def __init__(self) -> None:
        self.size = 0

    def write(self, data: bytes | bytearray | memoryview) -> int:
        length = memoryview(data).nbytes
        self.size += length
        return length


def measure_bytes(obj: Any) -> int:
    """Deep size of ``obj`` in bytes by pickling into a counting sink (arrays counted out-of-band)."""
    sink = _CountingSink()
    buffers: list[int] = []

    def count_buffer(buffer: pickle.PickleBuffer) -> bool:
        buffers.append(buffer.raw().nbytes)
        return False  # False = do not serialise in-band; only counted.

    pickle.Pickler(sink, protocol=5, buffer_callback=count_buffer).dump(obj)
    return sink.size + sum(buffers)


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
    """Collect garbage and return freed heap pages to the OS (glibc ``malloc_trim(0)``).

    Without the trim, dropped forests stay in the process (DESIGN §8: ~1 GB held after 20 unloads).
    Returns whether a trim was possible.
    """
    gc.collect()
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
