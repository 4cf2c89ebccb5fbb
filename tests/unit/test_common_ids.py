"""house_prices.ids: ULIDs that are unique, sort by time and count up within a millisecond; prediction ids
that carry their city and parse back, and a parser that refuses everything else."""

from __future__ import annotations

import string
import threading
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from house_prices import ids
from house_prices.errors import InvalidInput, InvalidPredictionId
from house_prices.naming import CITY_PATTERN

cities = st.from_regex(f"\\A{CITY_PATTERN}\\Z")
milliseconds = st.integers(min_value=0, max_value=ids.MAX_TIMESTAMP_MS)
randoms = st.integers(min_value=0, max_value=(1 << 80) - 1)


class Clock:
    def __init__(self, now: int) -> None:
        self.now = now

    def __call__(self) -> int:
        return self.now


@given(st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_encoding_round_trips_and_is_26_crockford_characters(value: int) -> None:
    text = ids.encode_ulid(value)
    assert len(text) == 26
    assert set(text) <= set(ids.CROCKFORD_ALPHABET)
    assert ids.decode_ulid(text) == value


@given(st.integers(min_value=0, max_value=(1 << 128) - 1), st.integers(min_value=0, max_value=(1 << 128) - 1))
def test_text_order_is_numeric_order(a: int, b: int) -> None:
    # Crockford's alphabet is in ASCII order, so comparing ids as strings compares their times
    assert (ids.encode_ulid(a) < ids.encode_ulid(b)) == (a < b)


def test_known_values() -> None:
    assert ids.encode_ulid(0) == "0" * 26
    assert ids.encode_ulid((1 << 128) - 1) == "7" + "Z" * 25
    # The spec's example id, against digit-by-digit base 32 (an independent decoder)
    digits = [ids.CROCKFORD_ALPHABET.index(c) for c in "01ARZ3NDEKTSV4RRFFQ69G5FAV"]
    value = 0
    for digit in digits:
        value = value * 32 + digit
    assert ids.decode_ulid("01ARZ3NDEKTSV4RRFFQ69G5FAV") == value
    assert ids.ulid_timestamp_ms("01ARZ3NDEKTSV4RRFFQ69G5FAV") == 1469922850259  # 2016-07-30T23:54:10.259Z


@given(milliseconds, randoms)
def test_the_first_ten_characters_are_the_millisecond(ms: int, random_bits: int) -> None:
    generator = ids.UlidGenerator(clock_ms=Clock(ms), random_bits=lambda: random_bits)
    assert ids.ulid_timestamp_ms(generator.new()) == ms


@settings(max_examples=200)
@given(st.lists(st.tuples(st.integers(min_value=-5, max_value=5), st.integers(min_value=1, max_value=50)), max_size=30))
def test_ids_of_a_process_strictly_increase_even_when_the_clock_stalls_or_goes_back(
    steps: list[tuple[int, int]],
) -> None:
    # Given a clock that moves forward, stands still or jumps back between batches
    clock = Clock(1_796_611_405_571)
    generator = ids.UlidGenerator(clock_ms=clock, random_bits=lambda: (1 << 80) - 3)  # near the carry
    made: list[str] = []
    for delta, count in steps:
        clock.now += delta
        made += generator.new_batch(count)
    # Then every id is new and each sorts after the one before
    assert made == sorted(made)
    assert len(set(made)) == len(made)


def test_same_millisecond_ids_are_consecutive() -> None:
    generator = ids.UlidGenerator(clock_ms=Clock(1000), random_bits=lambda: 41)
    values = [ids.decode_ulid(text) for text in [*generator.new_batch(3), generator.new()]]
    assert values == [(1000 << 80) + 41 + i for i in range(4)]


def test_a_new_millisecond_draws_new_random_bits() -> None:
    clock = Clock(1000)
    draws = iter([7, 99])
    generator = ids.UlidGenerator(clock_ms=clock, random_bits=lambda: next(draws))
    first = generator.new()
    clock.now = 1001
    second = generator.new()
    assert ids.decode_ulid(second) == (1001 << 80) + 99
    assert first < second


def test_running_out_of_random_bits_carries_into_the_next_millisecond() -> None:
    generator = ids.UlidGenerator(clock_ms=Clock(1000), random_bits=lambda: (1 << 80) - 1)
    first, second = generator.new_batch(2)
    assert ids.ulid_timestamp_ms(second) == 1001
    assert first < second


def test_many_threads_never_share_an_id() -> None:
    # The local HTTP bridge may run the handler on several threads of one process.
    generator = ids.UlidGenerator()
    made: list[list[str]] = [[] for _ in range(8)]

    def work(index: int) -> None:
        for _ in range(500):
            made[index] += generator.new_batch(2)

    threads = [threading.Thread(target=work, args=(index,)) for index in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    every = [text for batch in made for text in batch]
    assert len(set(every)) == len(every) == 8000


def test_the_process_generator_is_unique_across_a_large_batch() -> None:
    batch = ids.new_prediction_ids("Chicago_IL", 1000) + ids.new_prediction_ids("Chicago_IL", 1000)
    assert len(set(batch)) == 2000
    assert batch == sorted(batch)


@given(st.integers(min_value=0, max_value=ids.MAX_DATETIME_MS), randoms, cities)
def test_prediction_ids_round_trip_to_their_time_and_city(ms: int, random_bits: int, city: str) -> None:
    # Given an id made at a known millisecond for a city
    generator = ids.UlidGenerator(clock_ms=Clock(ms), random_bits=lambda: random_bits)
    (prediction_id,) = ids.new_prediction_ids(city, 1, generator)
    # When parsed
    parts = ids.parse_prediction_id(prediction_id)
    # Then it names that millisecond (UTC) and that city, and fits in MAX_PREDICTION_ID_LENGTH
    assert parts == (datetime.fromtimestamp(ms / 1000, tz=UTC), city)
    assert parts.timestamp.tzinfo is UTC
    assert len(prediction_id) <= ids.MAX_PREDICTION_ID_LENGTH


def test_an_id_after_the_year_9999_is_refused_not_crashed_on() -> None:
    # A well-formed ULID can name any millisecond up to 10889; a datetime stops at 9999.
    generator = ids.UlidGenerator(clock_ms=Clock(ids.MAX_DATETIME_MS + 1), random_bits=lambda: 0)
    (beyond,) = ids.new_prediction_ids("Chicago_IL", 1, generator)
    with pytest.raises(InvalidPredictionId):
        ids.parse_prediction_id(beyond)
    generator = ids.UlidGenerator(clock_ms=Clock(ids.MAX_DATETIME_MS), random_bits=lambda: 0)
    assert ids.parse_prediction_id(ids.new_prediction_ids("Chicago_IL", 1, generator)[0]).timestamp.year == 9999


def test_a_city_with_dashes_keeps_them() -> None:
    (prediction_id,) = ids.new_prediction_ids("Winston-Salem_NC", 1)
    assert ids.parse_prediction_id(prediction_id).city == "Winston-Salem_NC"


def test_an_invalid_city_gets_no_id() -> None:
    with pytest.raises(InvalidInput):
        ids.new_prediction_ids("../etc", 1)


VALID = "01M9764XR33EMVDJ4VB4ZFX2SK-Chicago_IL"


@pytest.mark.parametrize(
    "text",
    [
        "",
        "01M9764XR33EMVDJ4VB4ZFX2SK",  # no city
        "01M9764XR33EMVDJ4VB4ZFX2SK-",  # empty city
        "01M9764XR33EMVDJ4VB4ZFX2S-Chicago_IL",  # 25 characters
        "01M9764XR33EMVDJ4VB4ZFX2SKK-Chicago_IL",  # 27 characters: the city would start with K-...
        "01m9764xr33emvdj4vb4zfx2sk-Chicago_IL",  # lower case: not the canonical text
        "81M9764XR33EMVDJ4VB4ZFX2SK-Chicago_IL",  # over 128 bits
        "01M9764XR33EMVDJ4VB4ZFX2SI-Chicago_IL",  # I is not Crockford
        "01M9764XR33EMVDJ4VB4ZFX2SU-Chicago_IL",  # nor U
        "01M9764XR33EMVDJ4VB4ZFX2SK_Chicago_IL",  # wrong separator
        "01M9764XR33EMVDJ4VB4ZFX2SK-1Chicago",  # a city starts with a letter
        "01M9764XR33EMVDJ4VB4ZFX2SK-Chicago IL",
        "01M9764XR33EMVDJ4VB4ZFX2SK-Chicago_IL\n",
        " " + VALID,
        VALID + "x" * 60,  # city over 64 characters
        "01M9764XR33EMVDJ4VB4ZFX2SK-Chicago_IL/../x",
    ],
)
def test_the_parser_refuses_anything_but_an_id_as_the_api_returns_it(text: str) -> None:
    with pytest.raises(InvalidPredictionId) as caught:
        ids.parse_prediction_id(text)
    assert caught.value.problems[0].field == "prediction_id"


@pytest.mark.parametrize("value", [None, 42, ["01M9764XR33EMVDJ4VB4ZFX2SK-Chicago_IL"], b"01M"])
def test_non_strings_are_refused_naming_the_field(value: object) -> None:
    with pytest.raises(InvalidPredictionId) as caught:
        ids.parse_prediction_id(value, field="labels[3].prediction_id")
    assert caught.value.problems[0].field == "labels[3].prediction_id"
    assert isinstance(caught.value, InvalidInput)  # a 400 through the router's one error map


@settings(max_examples=500)
@given(st.text(alphabet=string.printable + "é\u2028\x00", max_size=120))
def test_junk_never_parses_unless_it_has_the_exact_shape(text: str) -> None:
    try:
        parts = ids.parse_prediction_id(text)
    except InvalidPredictionId:
        return
    ulid, _, city = text.partition("-")
    assert len(ulid) == 26
    assert ids.encode_ulid(ids.decode_ulid(ulid)) == ulid
    assert parts.city == city


def test_a_huge_input_is_refused_without_echoing_all_of_it() -> None:
    with pytest.raises(InvalidPredictionId) as caught:
        ids.parse_prediction_id("x" * 1_000_000)
    assert len(caught.value.problems[0].problem) < 300
