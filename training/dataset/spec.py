"""What the user asked for: where the data is, which columns mean what, and the limits."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

DEFAULT_MIN_ROWS = 30
DEFAULT_MAX_BYTES = 512 * 2**20
# Far above the thousands of segments a multi-model endpoint serves; a segment column with more
# distinct values is almost always an id column, and a million-segment report helps nobody.
DEFAULT_MAX_SEGMENTS = 100_000


@dataclass(frozen=True)
class DataSpec:
    """One "bring your own file" request; the CLI flags map one to one onto these fields.

    ``columns`` maps a schema feature to ``COL``, ``COL*NUMBER``, ``COL/NUMBER`` (a unit conversion,
    e.g. ``LOT_ACRES="sqft_lot/43560"``) or a numeric constant such as ``"0"`` for a feature the file
    lacks; a feature not named here maps to the file column with its name, in any case.
    ``price_column`` takes the same ``COL``/``COL*NUMBER``/``COL/NUMBER`` forms (prices in thousands:
    ``"price_k*1000"``).
    """

    source: str
    segment_column: str
    price_column: str
    columns: Mapping[str, str] = field(default_factory=dict)
    id_column: str | None = None
    segments: Sequence[str] | None = None
    strict: bool = False
    min_rows: int = DEFAULT_MIN_ROWS
    max_bytes: int = DEFAULT_MAX_BYTES
    max_segments: int = DEFAULT_MAX_SEGMENTS
