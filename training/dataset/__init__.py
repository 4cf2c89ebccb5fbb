"""Bring your own file: read a user's CSV or Parquet (local or S3), map its columns onto the schema,
validate every row, name the segments, split them stably, and report all of it before any training.

``load_dataset(DataSpec(...))`` returns a ``Dataset``: the ``Segment``s that can train (each holds a
``training.data.CityData`` like a synthetic city, plus its data hash) and a ``ValidationReport``
(``print_report`` renders it; ``to_json`` serialises it). Anything unusable raises one
``DatasetError`` whose message says what to fix.

Modules: ``spec`` (the request), ``source`` + ``s3`` (where the bytes are, how many), ``tables``
(CSV/Parquet header and batches), ``mapping`` (features ← columns), ``validate`` (row checks),
``names`` (segment value → city name), ``splits`` (stable split, data hash), ``sanity`` (price
warnings), ``segments`` (per-segment assembly), ``report`` (the record and its rendering), ``load``.
"""

from __future__ import annotations

from training.dataset.errors import DatasetError
from training.dataset.load import Dataset, load_dataset
from training.dataset.names import NAME_RULE, city_name
from training.dataset.report import SegmentReport, ValidationReport, print_report
from training.dataset.segments import Segment
from training.dataset.spec import DEFAULT_MAX_BYTES, DEFAULT_MAX_SEGMENTS, DEFAULT_MIN_ROWS, DataSpec

__all__ = [
    "DEFAULT_MAX_BYTES",
    "DEFAULT_MAX_SEGMENTS",
    "DEFAULT_MIN_ROWS",
    "NAME_RULE",
    "DataSpec",
    "Dataset",
    "DatasetError",
    "Segment",
    "SegmentReport",
    "ValidationReport",
    "city_name",
    "load_dataset",
    "print_report",
]
