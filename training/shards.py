"""Many segments per worker: what one segment brings to training, and shards balanced by rows.

A shard is what one process trains in one interpreter (a local worker or one SageMaker job):
``train.py --segments`` reads its train channel, ``shard.npz`` (``{city}.{split}`` → rows in
``schema.CSV_COLUMNS`` order; plain arrays, loaded with ``allow_pickle=False``) and ``segments.json``.
"""

from __future__ import annotations

import hashlib
import heapq
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from house_prices import naming
from training import data as data_module
from training.train import SHARD_ARRAYS, SHARD_INDEX


@dataclass(frozen=True)
class SegmentInput:
    """One segment ready to train: its rows and split, and what identifies its data."""

    data: data_module.CityData
    data_hash: str
    source_value: str | None = None
    details: Mapping[str, Any] = field(default_factory=dict)

    @property
    def city(self) -> str:
        return self.data.city

    @property
    def rows(self) -> int:
        return len(self.data.rows)

    def metadata(self) -> dict[str, Any]:
        """What goes into the artifact's ``metrics.json`` under ``data``."""
        counts = {split: len(indices) for split, indices in self.data.splits.items()}
        meta: dict[str, Any] = {"hash": self.data_hash, "rows": self.rows, "split_rows": counts}
        if self.source_value is not None:
            meta["segment_value"] = self.source_value
        return {**meta, **self.details}


def rows_hash(rows: np.ndarray) -> str:
    """sha256 of a segment's rows, independent of their order (the synthetic cities' data hash)."""
    canonical = np.ascontiguousarray(np.asarray(rows, dtype="<f8"))
    if canonical.ndim != 2:
        raise ValueError(f"rows must be 2-D, got shape {canonical.shape}")
    order = np.lexsort(canonical.T[::-1]) if len(canonical) else np.arange(0)
    return hashlib.sha256(canonical[order].tobytes()).hexdigest()


def synthetic_segment(city: str, houses: int, seed: int) -> SegmentInput:
    data = data_module.generate_city(city, houses, seed)
    return SegmentInput(data=data, data_hash=rows_hash(data.rows), details={"synthetic_seed": seed})


def plan_shards(
    segments: Sequence[SegmentInput], *, shards: int | None = None, max_per_shard: int | None = None
) -> list[list[SegmentInput]]:
    """Split segments into shards balanced by rows (longest first onto the lightest shard with room).

    Give ``shards`` (local workers) or ``max_per_shard`` (segments per SageMaker job: the shard count
    is then ceil(N / max_per_shard)), or both. Empty shards are dropped; order inside a shard is by city.
    """
    if not segments:
        return []
    if max_per_shard is not None and max_per_shard < 1:
        raise ValueError(f"max_per_shard must be at least 1, got {max_per_shard}")
    count = shards or 1
    if max_per_shard is not None:
        count = max(count, math.ceil(len(segments) / max_per_shard))
    count = max(1, min(count, len(segments)))
    capacity = max_per_shard or len(segments)
    # (rows so far, segments so far, shard index): the lightest shard first, ties to the lower index.
    heap = [(0, 0, index) for index in range(count)]
    planned: list[list[SegmentInput]] = [[] for _ in range(count)]
    for segment in sorted(segments, key=lambda s: (-s.rows, s.city)):
        rows, size, index = heapq.heappop(heap)
        planned[index].append(segment)
        # A full shard leaves the heap; count * capacity >= len(segments), so the heap never runs dry.
        if size + 1 < capacity:
            heapq.heappush(heap, (rows + segment.rows, size + 1, index))
    return [sorted(shard, key=lambda s: s.city) for shard in planned if shard]


def write_shard(shard: Sequence[SegmentInput], channel_dir: Path) -> list[Path]:
    """Write a shard's train channel (``shard.npz`` + ``segments.json``); returns the two files."""
    channel_dir.mkdir(parents=True, exist_ok=True)
    arrays: dict[str, np.ndarray] = {}
    for segment in shard:
        naming.validate_city(segment.city)
        for split in naming.SPLITS:
            arrays[f"{segment.city}.{split}"] = segment.data.split_rows(split)
    arrays_path = channel_dir / SHARD_ARRAYS
    # Uncompressed: the shard is read once, next to where it was written or by SageMaker's own download.
    np.savez(arrays_path, allow_pickle=False, **arrays)
    index_path = channel_dir / SHARD_INDEX
    index = {"segments": [{"city": segment.city, "data": segment.metadata()} for segment in shard]}
    index_path.write_text(json.dumps(index, indent=1) + "\n")
    return [arrays_path, index_path]
