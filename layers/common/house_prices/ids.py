"""Prediction ids: unique, sortable by time, and carrying their city — built and parsed only here.

A **ULID** (https://github.com/ulid/spec) is 128 bits: a 48-bit Unix time in milliseconds, then 80
random bits, written as 26 characters of Crockford's base32 (``0-9 A-Z`` without ``I L O U``), most
significant first. Ids made later sort later (as strings too), and within one process ids made in
the same millisecond are **monotonic**: the random part of the previous id plus one, so a batch of
houses gets consecutive ids and no two ids of a process are ever equal.

A **prediction id** is ``{ulid}-{city}``, e.g. ``01JEXAMPLE0000000000000000-Chicago_IL``. City names
match ``naming.CITY_PATTERN`` (``[A-Za-z][A-Za-z0-9_-]{0,63}``), so the ``-`` after the 26 ULID
characters separates the two, and an id is at most 26 + 1 + 64 = 91 characters. A label sent back
with only its prediction id therefore names its city and the millisecond the price was made, which
is exactly the capture partition it was recorded under (``naming.KeyLayout.capture_prefix``): no
lookup table is needed to join a label to its prediction.

Standard library only (the Lambda layer and ``sourcedir.tar.gz`` share the package); encoding is 13
lookups in a table of character pairs (~2 µs an id; ``base64.b32encode`` took 6).
"""

from __future__ import annotations

import base64
import os
import re
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from functools import cache
from typing import NamedTuple

from house_prices.errors import FieldProblem, InvalidPredictionId
from house_prices.naming import CITY_PATTERN, validate_city

ULID_LENGTH = 26
CROCKFORD_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
_RFC4648_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ234567"
_FROM_CROCKFORD = str.maketrans(CROCKFORD_ALPHABET, _RFC4648_ALPHABET)
# Two characters per 10 bits: 13 table lookups encode 130 bits (128 plus two leading zeros).
_PAIRS = [first + second for first in CROCKFORD_ALPHABET for second in CROCKFORD_ALPHABET]
_PAIR_SHIFTS = tuple(range(120, -1, -10))
TIME_BITS = 48
RANDOM_BITS = 80
MAX_TIMESTAMP_MS = (1 << TIME_BITS) - 1
_RANDOM_LIMIT = 1 << RANDOM_BITS
# 128 bits need 26 five-bit characters, the first carrying only 3 bits: 0-7.
ULID_PATTERN = f"[0-7][{CROCKFORD_ALPHABET}]{{{ULID_LENGTH - 1}}}"
PREDICTION_ID_PATTERN = f"(?P<ulid>{ULID_PATTERN})-(?P<city>{CITY_PATTERN})"
MAX_PREDICTION_ID_LENGTH = ULID_LENGTH + 1 + 64
# 9999-12-31T23:59:59.999Z, the last millisecond a datetime holds (ULIDs run on to the year 10889).
MAX_DATETIME_MS = 253_402_300_799_999


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


def _random80() -> int:
    return int.from_bytes(os.urandom(RANDOM_BITS // 8), "big")


def encode_ulid(value: int) -> str:
    """The 26-character Crockford base32 text of a 128-bit integer."""
    if not 0 <= value < 1 << 128:
        raise ValueError(f"a ULID is 128 bits, got {value.bit_length()}")
    return "".join([_PAIRS[(value >> shift) & 1023] for shift in _PAIR_SHIFTS])


def decode_ulid(text: str) -> int:
    """The 128-bit integer of a canonical (upper-case) ULID; ValueError for anything else."""
    if not isinstance(text, str) or not _pattern(ULID_PATTERN).fullmatch(text):
        raise ValueError(f"not a ULID: {text!r}")
    # 20 bytes = 32 base32 characters: six zero characters and two zero bits pad the 26 to 160 bits.
    return int.from_bytes(base64.b32decode("AAAAAA" + text.translate(_FROM_CROCKFORD)), "big")


_DIGITS = {character: value for value, character in enumerate(CROCKFORD_ALPHABET)}


@cache
def _pattern(pattern: str) -> re.Pattern[str]:
    """Compiled on first use: the router's cold start never parses an id."""
    return re.compile(pattern)


def ulid_timestamp_ms(text: str) -> int:
    """Milliseconds since the Unix epoch, from a ULID's first 10 characters."""
    if not isinstance(text, str) or len(text) != ULID_LENGTH or text[0] > "7":
        raise ValueError(f"not a ULID: {text!r}")
    milliseconds = 0
    try:
        for character in text:
            milliseconds = milliseconds * 32 + _DIGITS[character]
    except KeyError:
        raise ValueError(f"not a ULID: {text!r}") from None
    return milliseconds >> RANDOM_BITS


class UlidGenerator:
    """Monotonic ULIDs for one process; thread-safe (the local HTTP bridge may share a process).

    A new millisecond draws fresh random bits; the same millisecond (or a clock that went back)
    continues from the last id plus one, so ids of this process strictly increase. The clock and the
    random source are injectable for tests.
    """

    def __init__(self, clock_ms: Callable[[], int] = _now_ms, random_bits: Callable[[], int] = _random80) -> None:
        self._clock_ms = clock_ms
        self._random_bits = random_bits
        self._lock = threading.Lock()
        self._last = -1  # the last id handed out, as a 128-bit integer

    def next_values(self, count: int) -> list[int]:
        """``count`` consecutive ULIDs as integers."""
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        with self._lock:
            now = self._clock_ms()
            if not 0 <= now <= MAX_TIMESTAMP_MS:
                raise ValueError(f"the clock is outside the ULID range: {now} ms")
            if now > self._last >> RANDOM_BITS:
                first = (now << RANDOM_BITS) | (self._random_bits() % _RANDOM_LIMIT)
            else:
                # Same millisecond, or the clock went back: keep counting from the last id. Running
                # past the 80 random bits carries into the next millisecond, which keeps the order.
                first = self._last + 1
            last = first + count - 1
            if last >> RANDOM_BITS > MAX_TIMESTAMP_MS:
                raise ValueError("the ULID space is exhausted (year 10889)")
            self._last = last
        return list(range(first, last + 1))

    def new(self) -> str:
        return encode_ulid(self.next_values(1)[0])

    def new_batch(self, count: int) -> list[str]:
        return [encode_ulid(value) for value in self.next_values(count)]


_GENERATOR = UlidGenerator()


def new_ulid() -> str:
    """A ULID from this process's monotonic generator."""
    return _GENERATOR.new()


def new_prediction_ids(city: str, count: int, generator: UlidGenerator | None = None) -> list[str]:
    """``count`` consecutive prediction ids for ``city`` (one per house of a request, in order)."""
    suffix = f"-{validate_city(city)}"
    return [ulid + suffix for ulid in (generator or _GENERATOR).new_batch(count)]


class PredictionIdParts(NamedTuple):
    """What a prediction id says: when the price was made (UTC, millisecond) and for which city."""

    timestamp: datetime
    city: str


def parse_prediction_id(text: object, field: str = "prediction_id") -> PredictionIdParts:
    """``{ulid}-{city}`` → (timestamp, city); InvalidPredictionId (a 400 naming ``field``) for anything else.

    Canonical ids only: upper-case Crockford letters, as the API hands them out, so one prediction
    has exactly one id text (labels are idempotent per id).
    """
    if not isinstance(text, str):
        raise InvalidPredictionId([FieldProblem(field, f"must be a string, got {type(text).__name__}")])
    match = _pattern(PREDICTION_ID_PATTERN).fullmatch(text) if len(text) <= MAX_PREDICTION_ID_LENGTH else None
    if match is None:
        shown = text if len(text) <= 100 else text[:97] + "..."
        raise InvalidPredictionId(
            [FieldProblem(field, f"must be a prediction id as the API returned it ({{ULID}}-{{city}}), got {shown!r}")]
        )
    milliseconds = ulid_timestamp_ms(match.group("ulid"))
    if milliseconds > MAX_DATETIME_MS:
        raise InvalidPredictionId([FieldProblem(field, "names a time after the year 9999: not an id the API made")])
    timestamp = datetime.fromtimestamp(milliseconds / 1000, tz=UTC)
    return PredictionIdParts(timestamp, match.group("city"))
