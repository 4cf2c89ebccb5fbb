"""How much of the container's memory a loaded model takes: the bytes every worker shares, and its own.

A model is measured as ``endpoint.memory`` does (pickled into a counting sink, large buffers counted
out-of-band and never copied), and each out-of-band buffer is also asked where its memory lives: a
buffer whose base is an ``mmap`` (a packed forest's node arrays, ``PackedForest.load(mmap=True)``) is
file pages in the page cache, shared by every worker process that maps the model; the rest is private
to each process that holds the model. The budget charges shared bytes once and private bytes once per
worker, plus a fixed per-worker cost of the Python objects around a model (measured in
docs/container.md), since any worker may map any model.
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from typing import Any

from endpoint.memory import pickled_bytes, stated_bytes

# Memory per model per worker beside the measured bytes: the Python objects around it (PackedForest, its
# ForestArrays, array headers, the mmap object, the worker's bookkeeping) and the heap slack its load
# leaves. Measured: ~27 KiB per worker per mapped 100-tree forest (docs/container.md, PSS).
PER_WORKER_OVERHEAD_BYTES = 32 * 1024


@dataclass(frozen=True)
class ModelSize:
    shared: int
    private: int
    method: str

    def charged(self, workers: int) -> int:
        """What the budget charges: shared pages once, private memory and overhead in every worker."""
        return self.shared + (self.private + PER_WORKER_OVERHEAD_BYTES) * workers


def measure(model: Any, *, fallback_bytes: int = 0) -> ModelSize:
    """The model's shared and private bytes; an unpicklable model counts as ``nbytes`` or ``fallback_bytes``."""
    shared = 0
    private = 0

    def count(view: memoryview) -> None:
        nonlocal shared, private
        if _mapped(view.obj):
            shared += view.nbytes
        else:
            private += view.nbytes

    try:
        in_band = pickled_bytes(model, count)
    except Exception:
        stated = stated_bytes(model)
        if stated is not None:
            return ModelSize(shared=0, private=stated, method="nbytes")
        return ModelSize(shared=0, private=max(fallback_bytes, 0), method="files")
    return ModelSize(shared=shared, private=private + in_band, method="measured")


def _mapped(exporter: Any) -> bool:
    """Whether a buffer's memory belongs to an ``mmap``: numpy arrays chain their owners through ``.base``,
    ending in the memoryview ``np.frombuffer`` took of the map."""
    for _ in range(64):
        if exporter is None:
            return False
        if isinstance(exporter, mmap.mmap):
            return True
        exporter = exporter.obj if isinstance(exporter, memoryview) else getattr(exporter, "base", None)
    return False
