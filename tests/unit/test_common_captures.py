"""house_prices.captures: the capture line the router writes and what a reader gets back from it."""

from __future__ import annotations

import gzip
import json
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from house_prices import captures, ids, schema
from house_prices.naming import KeyLayout
from tests.router_doubles import LIVE, SequentialIds

ROW = (2005, 3100, 4, 2.5, 1.1, 2)


def lines_for(count: int, house_ids: list[str | None] | None = None, **tags: Any) -> list[str]:
    """One request of ``count`` houses priced by LIVE in Chicago_IL; ``tags``: the rollout's keywords of the line."""
    return captures.capture_lines(
        city="Chicago_IL",
        version=LIVE,
        request_id="req-1",
        prediction_ids=SequentialIds.expected("Chicago_IL", count),
        rows=[ROW] * count,
        prices=[450000.0 + i for i in range(count)],
        house_ids=house_ids or [None] * count,
        **tags,
    )


def test_one_request_is_one_line_with_the_documented_fields() -> None:
    # Given two predictions of one request, the second with the caller's house id
    (line,) = lines_for(2, [None, "listing-9"])
    record = json.loads(line)
    # Then the line carries the marker, the format, the request's facts once, and each prediction
    assert record == {
        "capture": "predictions",
        "format": 1,
        "time": "2026-12-07T02:43:25.571Z",
        "city": "Chicago_IL",
        "version": LIVE,
        "request_id": "req-1",
        "predictions": [
            {
                "prediction_id": SequentialIds.expected("Chicago_IL", 2)[0],
                "price": 450000.0,
                "features": dict(zip(schema.FEATURE_NAMES, ROW, strict=True)),
            },
            {
                "prediction_id": SequentialIds.expected("Chicago_IL", 2)[1],
                "price": 450001.0,
                "features": dict(zip(schema.FEATURE_NAMES, ROW, strict=True)),
                "house_id": "listing-9",
            },
        ],
    }
    assert "\n" not in line


def test_the_time_is_the_first_ids_millisecond_and_names_the_partition() -> None:
    # Given a line
    (line,) = lines_for(1)
    record = json.loads(line)
    # Then its date is the partition a label holding only the prediction id would look in
    stamp, city = ids.parse_prediction_id(record["predictions"][0]["prediction_id"])
    assert record["time"].startswith(stamp.date().isoformat())
    assert KeyLayout().capture_prefix(city, record["time"][:10]) == (
        "DEMO_MME_SCIKIT_V1/captures/city=Chicago_IL/date=2026-12-07/"
    )


def test_the_subscription_filter_pattern_names_the_marker() -> None:
    assert captures.FILTER_PATTERN == '{ $.capture = "predictions" }'


def test_a_large_batch_is_split_into_lines_under_the_event_limit() -> None:
    # Given 1,000 houses with the longest house ids
    lines = lines_for(1000, ["x" * 64] * 1000)
    # Then every line is below the limit, the split keeps order, and nothing is lost or repeated
    assert len(lines) > 1
    assert all(len(line.encode()) <= captures.MAX_LINE_BYTES for line in lines)
    recorded = [p.prediction_id for line in lines for p in captures.parse_capture_line(line)]
    assert recorded == SequentialIds.expected("Chicago_IL", 1000)


def test_mismatched_lengths_are_a_bug_not_a_line() -> None:
    with pytest.raises(ValueError, match="one id, row, price and house_id"):
        captures.capture_lines(
            city="Chicago_IL",
            version=LIVE,
            request_id="r",
            prediction_ids=SequentialIds.expected("Chicago_IL", 2),
            rows=[ROW],
            prices=[1.0, 2.0],
            house_ids=[None, None],
        )


@settings(max_examples=100)
@given(
    st.lists(
        st.tuples(
            st.floats(min_value=0, max_value=1e7, allow_nan=False),
            st.none() | st.from_regex(f"\\A{schema.HOUSE_ID_PATTERN}\\Z"),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_what_is_written_reads_back_the_same(predictions: list[tuple[float, str | None]]) -> None:
    prediction_ids = SequentialIds.expected("Dallas_TX", len(predictions))
    lines = captures.capture_lines(
        city="Dallas_TX",
        version=LIVE,
        request_id="abc=",
        prediction_ids=prediction_ids,
        rows=[ROW] * len(predictions),
        prices=[price for price, _ in predictions],
        house_ids=[house_id for _, house_id in predictions],
    )
    body = gzip.compress(("\n".join(lines) + "\n\n").encode())  # as Firehose delivers: gzip, blank lines possible
    read = list(captures.read_capture_object(body))
    assert [(r.prediction_id, r.price, r.house_id) for r in read] == [
        (pid, price, house_id) for pid, (price, house_id) in zip(prediction_ids, predictions, strict=True)
    ]
    assert {(r.city, r.version, r.request_id) for r in read} == {("Dallas_TX", LIVE, "abc=")}


@pytest.mark.parametrize(
    ("line", "problem"),
    [
        ("not json", "not JSON"),
        ('{"level": "INFO", "message": "Predicted"}', "not a capture line"),
        ('{"capture": "predictions", "format": 2}', "format 2"),
        ('{"capture": "predictions", "format": 1, "city": "X"}', "incomplete"),
    ],
)
def test_lines_that_are_not_captures_are_refused(line: str, problem: str) -> None:
    with pytest.raises(ValueError, match=problem):
        captures.parse_capture_line(line)


def test_a_fallback_line_names_the_candidates_error() -> None:
    [line] = lines_for(
        1,
        rollout=captures.rollout_tag("20261201T040000Z-c0ffee00", "canary", "live", True),
        latency_ms=3.0,
        candidate_error="EndpointTimeout",
    )
    [read] = captures.parse_capture_line(line)
    assert (read.version, read.candidate_error, read.rollout and read.rollout["arm"]) == (
        LIVE,
        "EndpointTimeout",
        "live",
    )


def test_a_line_written_before_rollouts_still_reads_with_empty_tags() -> None:
    # Given a format-1 line exactly as the router wrote it before rollouts existed
    line = (
        '{"capture":"predictions","format":1,"time":"2026-12-07T02:43:25.571Z","city":"Chicago_IL",'
        f'"version":"{LIVE}","request_id":"r","predictions":[{{"prediction_id":'
        f'"{SequentialIds.expected("Chicago_IL", 1)[0]}","price":5.0,"features":{{"YEAR_BUILT":2005,'
        '"SQUARE_FEET":3100,"NUM_BEDROOMS":4,"NUM_BATHROOMS":2.5,"LOT_ACRES":1.1,"GARAGE_SPACES":2}}]}'
    )
    [read] = captures.parse_capture_line(line)
    assert (read.price, read.rollout, read.latency_ms, read.candidate_error) == (5.0, None, None, None)


@pytest.mark.parametrize(("field", "value"), [("rollout", "canary"), ("latency_ms", "fast"), ("latency_ms", True)])
def test_malformed_rollout_tags_are_refused(field: str, value: Any) -> None:
    [line] = lines_for(1)
    with pytest.raises(ValueError, match=field):
        captures.parse_capture_line(json.dumps({**json.loads(line), field: value}))
