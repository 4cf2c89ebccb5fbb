"""Row checks: every mapped cell becomes a float64 on the schema's grid, or its row gets one drop reason.

A cell is, in this order of checks, missing (null, empty, NA, N/A, null, none), non-numeric, NaN,
infinite or out of the schema's range (price: > 0). A row's reason is the first failing column in
``schema.CSV_COLUMNS`` order (PRICE first), so the counts are deterministic. Integer features and
NUM_BATHROOMS's 0.5 step are rounded onto their grid (serving accepts nothing else) and counted.
The work is vectorised with pyarrow compute and numpy: a batch costs a few passes over its columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from house_prices import schema
from training.dataset.errors import DatasetError
from training.dataset.mapping import Expression, ResolvedMapping

OK, MISSING, NON_NUMERIC, NAN, INFINITE, OUT_OF_RANGE = range(6)
STATUS_NAMES = ("ok", "missing", "non_numeric", "nan", "infinite", "out_of_range")
MISSING_TOKENS = ("", "na", "n/a", "null", "none")
# A superset of what pyarrow's string → float64 cast accepts, so a batch that fails the fast whole-column
# cast classifies each cell exactly as a batch that passes it would.
_NUMBER_TEXT = r"^[+-]?(?:(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|(?i:nan)(?:\([A-Za-z0-9_]*\))?|(?i:inf(?:inity)?))$"
# Segment and id values read from float columns: 98178.0 is the zip code 98178.
_WHOLE_NUMBER_TEXT = r"^([+-]?\d+)\.0*$"
_EXACT_INTEGER_LIMIT = 2.0**53
_FEATURES = {feature.name: feature for feature in schema.FEATURES}
_EXAMPLE_CHARS = 40


def _is_text(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_string(dtype) or pa.types.is_large_string(dtype) or pa.types.is_string_view(dtype))


def _is_number(dtype: pa.DataType) -> bool:
    return bool(pa.types.is_integer(dtype) or pa.types.is_floating(dtype) or pa.types.is_decimal(dtype))


def check_types(file: str, roles: dict[str, str], types: dict[str, pa.DataType]) -> None:
    """Refuse, before reading, a column whose stored type can hold neither numbers nor text (Parquet)."""
    problems = []
    for column, role in roles.items():
        dtype = types[column]
        if pa.types.is_dictionary(dtype):
            dtype = dtype.value_type
        if _is_text(dtype) or _is_number(dtype) or pa.types.is_null(dtype):
            continue
        wanted = "text or integers" if role in {"segment", "id"} else "numbers (or text holding numbers)"
        problems.append(f"column {column!r} ({role}) has type {dtype}, not {wanted}")
    if problems:
        raise DatasetError(f"{file}: {'; '.join(problems)}")


def _plain(array: pa.Array) -> pa.Array:
    if isinstance(array, pa.ChunkedArray):
        array = array.combine_chunks()
    if pa.types.is_dictionary(array.type):
        array = array.dictionary_decode()
    if pa.types.is_large_string(array.type) or pa.types.is_string_view(array.type):
        array = array.cast(pa.string())
    return array


def labels(array: pa.Array) -> pa.Array:
    """Segment or id values as trimmed text, null when missing; whole numbers lose their ".0"."""
    array = _plain(array)
    if pa.types.is_null(array.type):
        return pa.nulls(len(array), pa.string())
    if pa.types.is_floating(array.type):
        values = array.to_numpy(zero_copy_only=False)
        with np.errstate(invalid="ignore"):
            whole = np.isfinite(values) & (values == np.trunc(values)) & (np.abs(values) < _EXACT_INTEGER_LIMIT)
        as_int = pc.cast(pc.if_else(pa.array(whole), array, pa.scalar(0, array.type)), pa.int64())
        array = pc.if_else(pa.array(whole), pc.cast(as_int, pa.string()), pc.cast(array, pa.string()))
        array = pc.if_else(pa.array(np.isnan(values)), pa.scalar(None, pa.string()), array)
    elif not _is_text(array.type):
        array = pc.cast(array, pa.string())
    text = pc.replace_substring_regex(pc.utf8_trim_whitespace(array), _WHOLE_NUMBER_TEXT, r"\1")
    return pc.if_else(pc.equal(text, ""), pa.scalar(None, pa.string()), text)


def _parse_text(text: pa.Array) -> pa.Array:
    """float64 with nulls where the text is not a number; the fast path is one cast of the whole column."""
    try:
        return pc.cast(text, pa.float64())
    except pa.ArrowInvalid:
        pass
    candidates = pc.if_else(pc.match_substring_regex(text, _NUMBER_TEXT), text, pa.scalar(None, pa.string()))
    try:
        return pc.cast(candidates, pa.float64())
    except pa.ArrowInvalid:
        # The pattern let through something the cast refuses: decide cell by cell (never seen in practice).
        return pa.array([_one_number(cell) for cell in candidates.to_pylist()], pa.float64())


def _one_number(cell: str | None) -> float | None:
    if cell is None:
        return None
    try:
        return float(pc.cast(pa.array([cell]), pa.float64())[0].as_py())
    except pa.ArrowInvalid:
        return None


def numbers(array: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Each cell as float64 (NaN unless OK) and its status (OK, MISSING, NON_NUMERIC, NAN, INFINITE)."""
    array = _plain(array)
    if pa.types.is_null(array.type):
        return np.full(len(array), np.nan), np.full(len(array), MISSING, np.int8)
    if _is_text(array.type):
        text = pc.utf8_trim_whitespace(array)
        missing = pc.fill_null(pc.is_in(pc.utf8_lower(text), pa.array(MISSING_TOKENS)), True)
        parsed = _parse_text(text)
        missing_mask = missing.to_numpy(zero_copy_only=False)
    else:
        parsed = pc.cast(array, pa.float64())
        missing_mask = parsed.is_null().to_numpy(zero_copy_only=False)
    is_number = parsed.is_valid().to_numpy(zero_copy_only=False)
    values = parsed.to_numpy(zero_copy_only=False).astype(np.float64, copy=False)
    status = np.full(len(values), OK, np.int8)
    status[np.isinf(values)] = INFINITE
    status[np.isnan(values) & is_number] = NAN
    status[~is_number] = NON_NUMERIC
    status[missing_mask] = MISSING
    return np.where(status == OK, values, np.nan), status


@dataclass(frozen=True)
class CheckedRows:
    """One batch after the checks: values in CSV_COLUMNS order, each row's reason (0 = usable), grid moves."""

    values: np.ndarray
    reasons: np.ndarray
    rounded: np.ndarray
    ids: pa.Array | None


class RowChecker:
    """The checks for one mapping; owns the reason names ("nan:PRICE", …) and each reason's first example."""

    def __init__(self, mapping: ResolvedMapping) -> None:
        self._mapping = mapping
        self._targets: list[tuple[str, Expression]] = [
            (schema.TARGET, mapping.price),
            *((name, mapping.features[name]) for name in schema.FEATURE_NAMES),
        ]
        self.reasons: list[str] = ["usable"]
        self._reason_index: dict[tuple[int, int], int] = {}
        for position, (name, _) in enumerate(self._targets):
            for status in range(MISSING, OUT_OF_RANGE + 1):
                self._reason_index[(position, status)] = len(self.reasons)
                self.reasons.append(f"{STATUS_NAMES[status]}:{name}")
        self._missing_id = len(self.reasons)
        self.reasons.append(f"missing:{mapping.id_column}")
        self.examples: dict[str, str] = {}

    def _remember(self, reasons: np.ndarray, reason: int, raw: pa.Array) -> None:
        name = self.reasons[reason]
        if name in self.examples:
            return
        where = np.flatnonzero(reasons == reason)
        if len(where):
            text = str(raw[int(where[0])].as_py())
            self.examples[name] = text if len(text) <= _EXAMPLE_CHARS else text[: _EXAMPLE_CHARS - 3] + "..."

    def check(self, batch: pa.RecordBatch) -> CheckedRows:
        n = batch.num_rows
        values = np.empty((n, len(self._targets)), np.float64)
        rounded = np.zeros((n, len(self._targets)), bool)
        reasons = np.zeros(n, np.int16)
        for position, (name, expression) in enumerate(self._targets):
            if expression.is_constant:
                values[:, position] = expression.number
                continue
            raw = batch.column(expression.column)
            column, status = numbers(raw)
            column = expression.apply(column)
            status[(status == OK) & np.isinf(column)] = INFINITE
            column, moved = _on_grid(name, column)
            rounded[:, position] = moved
            status[(status == OK) & ~_in_range(name, column)] = OUT_OF_RANGE
            values[:, position] = column
            for code in range(MISSING, OUT_OF_RANGE + 1):
                first = (reasons == 0) & (status == code)
                if first.any():
                    reason = self._reason_index[(position, code)]
                    reasons[first] = reason
                    self._remember(reasons, reason, raw)
        ids = None
        if self._mapping.id_column is not None:
            ids = labels(batch.column(self._mapping.id_column))
            lacking = (reasons == 0) & ids.is_null().to_numpy(zero_copy_only=False)
            reasons[lacking] = self._missing_id
        # -0.0 and 0.0 are one value for keys and hashes.
        values += 0.0
        return CheckedRows(values=values, reasons=reasons, rounded=rounded, ids=ids)


def _on_grid(name: str, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    feature = _FEATURES.get(name)
    if feature is None or not (feature.integer or feature.step):
        return values, np.zeros(len(values), bool)
    step = 1.0 if feature.integer else float(feature.step or 1.0)
    with np.errstate(invalid="ignore", over="ignore"):
        snapped = np.round(values / step) * step if step != 1.0 else np.round(values)
        moved = np.isfinite(values) & (snapped != values)
    return snapped, moved


def _in_range(name: str, values: np.ndarray) -> np.ndarray:
    with np.errstate(invalid="ignore"):
        feature = _FEATURES.get(name)
        if feature is None:
            return np.asarray(values > 0)
        return np.asarray((values >= feature.minimum) & (values <= feature.maximum))


def describe_drops(counts: Sequence[tuple[str, int]]) -> str:
    return ", ".join(f"{reason} {count:,}" for reason, count in counts)
