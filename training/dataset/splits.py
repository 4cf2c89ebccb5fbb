"""Stable splits and data hashes: a row's split depends on that row alone, a segment's hash on its rows alone.

A row's key is its id (``--id-column``) or its values: the parsed, converted and rounded float64s in
``schema.CSV_COLUMNS`` order, as 8-byte little-endian IEEE-754 (a fixed formatting: no locale, no
repr), prefixed by the segment value. blake2b of the key, read as a number in [0, 1), picks train
(< 0.6), validation (< 0.9) or test, so adding rows never moves an existing row, and exact duplicate
rows always share a split (no copy of a validation house is trained on).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Sequence

import numpy as np

from house_prices import schema
from training.data import SPLIT_FRACTIONS

SPLITS = ("train", "val", "test")
TRAIN, VAL, TEST = range(3)
_PERSON = b"house-split-v1"
_HASH_HEADER = ("house-prices-dataset-v1\n" + ",".join(schema.CSV_COLUMNS) + "\n").encode()
_TRAIN_BELOW = np.uint64(int(SPLIT_FRACTIONS["train"] * 2**64))
_VAL_BELOW = np.uint64(int((SPLIT_FRACTIONS["train"] + SPLIT_FRACTIONS["val"]) * 2**64))


def segment_prefix(segment_value: str) -> bytes:
    """The start of every key in a segment; the NUL keeps ("ab", "c") and ("a", "bc") apart."""
    return segment_value.encode() + b"\x00"


def value_keys(values: np.ndarray) -> list[bytes]:
    """Each row's values as 8-byte little-endian float64s (``values`` is (n, len(CSV_COLUMNS)), -0.0 already 0.0)."""
    raw = np.ascontiguousarray(values, dtype="<f8").tobytes()
    width = values.shape[1] * 8 if values.ndim == 2 else 0
    return [raw[start : start + width] for start in range(0, len(raw), width)] if width else []


def id_keys(ids: Iterable[str]) -> list[bytes]:
    return [value.encode() for value in ids]


def key_hashes(prefixes: Sequence[bytes], codes: np.ndarray, keys: Sequence[bytes]) -> np.ndarray:
    """uint64 blake2b digest of ``prefixes[codes[i]] + keys[i]`` for each row (one C call per row)."""
    digests = b"".join(
        hashlib.blake2b(prefixes[code] + key, digest_size=8, person=_PERSON).digest()
        for code, key in zip(codes.tolist(), keys, strict=True)
    )
    return np.frombuffer(digests, dtype="<u8").astype(np.uint64)


def split_codes(hashes: np.ndarray) -> np.ndarray:
    """TRAIN, VAL or TEST per hash: the shares of ``training.data.SPLIT_FRACTIONS``."""
    return np.where(hashes < _TRAIN_BELOW, TRAIN, np.where(hashes < _VAL_BELOW, VAL, TEST)).astype(np.int8)


def split_of(segment_value: str, key: bytes) -> str:
    """The split of one row key (the same function as the vectorised path, for tests and docs)."""
    hashes = key_hashes([segment_prefix(segment_value)], np.zeros(1, np.int64), [key])
    return SPLITS[int(split_codes(hashes)[0])]


def canonical_order(codes: np.ndarray, values: np.ndarray, splits: np.ndarray) -> np.ndarray:
    """Rows grouped by segment, then sorted by their values (then split): the same rows in any file order
    come out in one order, so they hash and train the same."""
    keys = [splits, *(values[:, column] for column in reversed(range(values.shape[1]))), codes]
    return np.lexsort(keys)


def data_hash(values: np.ndarray, splits: np.ndarray) -> str:
    """sha256 of a segment's rows in canonical order with each row's split: changes exactly when training would."""
    records = np.empty(len(values), dtype=[("values", "<f8", (values.shape[1],)), ("split", "u1")])
    records["values"] = values
    records["split"] = splits
    digest = hashlib.sha256(_HASH_HEADER)
    digest.update(records.tobytes())
    return digest.hexdigest()


def split_indices(splits: np.ndarray) -> dict[str, np.ndarray]:
    """Sorted row indices per split name, as ``training.data.CityData.splits`` holds them."""
    return {name: np.flatnonzero(splits == code) for code, name in enumerate(SPLITS)}
