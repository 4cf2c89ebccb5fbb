"""What a loaded model is charged: memory-mapped forest pages once, private memory once per worker."""

from __future__ import annotations

import threading
from pathlib import Path

from container.sizing import PER_WORKER_OVERHEAD_BYTES, ModelSize, measure
from packed_forest import PackedForest
from tests.container_harness import complete_forest


def test_a_memory_mapped_forest_is_shared_and_a_read_one_private(tmp_path: Path) -> None:
    path = tmp_path / "forest.npz"
    path.write_bytes(complete_forest(n_trees=10, depth=5))
    mapped = PackedForest.load(path, mmap=True)
    read = PackedForest.load(path, mmap=False)

    shared_size = measure(mapped)
    private_size = measure(read)

    assert shared_size.shared >= mapped.arrays.nbytes
    assert shared_size.private < 2048
    assert private_size.shared == 0
    assert private_size.private >= read.arrays.nbytes


def test_the_charge_counts_private_bytes_and_overhead_in_every_worker() -> None:
    size = ModelSize(shared=1000, private=10, method="measured")

    assert size.charged(workers=3) == 1000 + 3 * (10 + PER_WORKER_OVERHEAD_BYTES)


def test_a_model_that_cannot_be_pickled_is_charged_its_stated_size_or_its_files() -> None:
    # Instances holding a lock cannot be pickled.
    class Stated:
        nbytes = 4321

        def __init__(self) -> None:
            self.lock = threading.Lock()

    class Opaque:
        def __init__(self) -> None:
            self.lock = threading.Lock()

    assert measure(Stated()) == ModelSize(0, 4321, "nbytes")
    assert measure(Opaque(), fallback_bytes=777) == ModelSize(0, 777, "files")
