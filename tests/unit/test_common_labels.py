"""house_prices.labels: what POST /feedback, the feedback queue and bulk label files accept."""

from __future__ import annotations

import gzip
import json
from datetime import UTC, datetime, timedelta

import pytest

from house_prices import ids, labels
from house_prices.errors import InvalidInput, PayloadTooLarge
from house_prices.ids import UlidGenerator

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)


def prediction_id(at: datetime, city: str = "Chicago_IL") -> str:
    generator = UlidGenerator(clock_ms=lambda: int(at.timestamp() * 1000), random_bits=lambda: 7)
    return ids.new_prediction_ids(city, 1, generator)[0]


RECENT = prediction_id(NOW - timedelta(days=3))


def problems(error: pytest.ExceptionInfo[InvalidInput]) -> dict[str, str]:
    return {p.field: p.problem for p in error.value.problems}


def test_a_label_by_prediction_id_names_its_city_from_the_id() -> None:
    # Given a label naming a three-day-old prediction
    body = {"prediction_id": RECENT, "sale_price": 512000, "sold_at": "2026-12-01"}
    # When it is parsed
    (label,) = labels.parse_feedback(body, NOW)
    # Then the city comes from the id and the key is the id's
    assert label == labels.Label("Chicago_IL", 512000.0, "2026-12-01", RECENT, None)
    assert label.key == f"id#{RECENT}"


def test_a_label_by_city_and_house_id_is_keyed_by_both() -> None:
    body = {"city": "Austin_TX", "house_id": "listing-1", "sale_price": 1.5e5, "sold_at": "2026-11-30"}
    (label,) = labels.parse_feedback(body, NOW)
    assert (label.city, label.house_id, label.prediction_id) == ("Austin_TX", "listing-1", None)
    assert label.key == "house#Austin_TX#listing-1"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"prediction_id": RECENT, "sale_price": 0, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": -5, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": True, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": "500000", "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": 1e300 * 1e10, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": 1e12, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-13-01"}, "sold_at"),
        ({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01T00:00:00"}, "sold_at"),
        ({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": 20261201}, "sold_at"),
        ({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2027-01-01"}, "sold_at"),
        ({"prediction_id": RECENT.lower(), "sale_price": 5e5, "sold_at": "2026-12-01"}, "prediction_id"),
        ({"prediction_id": RECENT, "sold_at": "2026-12-01"}, "sale_price"),
        ({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01", "price": 1}, "price"),
        ({"prediction_id": RECENT, "city": "X", "sale_price": 5e5, "sold_at": "2026-12-01"}, "city"),
        ({"city": "Austin_TX", "sale_price": 5e5, "sold_at": "2026-12-01"}, "house_id"),
        ({"city": "1bad", "house_id": "h", "sale_price": 5e5, "sold_at": "2026-12-01"}, "city"),
        ({"city": "Austin_TX", "house_id": " h", "sale_price": 5e5, "sold_at": "2026-12-01"}, "house_id"),
    ],
)
def test_a_bad_label_is_a_400_naming_the_field(body: dict[str, object], field: str) -> None:
    # When a label with one bad field is parsed
    with pytest.raises(InvalidInput) as error:
        labels.parse_feedback(body, NOW)
    # Then the error names that field
    assert field in problems(error)


def test_a_prediction_older_than_the_retention_window_is_refused() -> None:
    # Given a prediction made 400 days ago and the default 365-day window
    old = prediction_id(NOW - timedelta(days=400))
    with pytest.raises(InvalidInput) as error:
        labels.parse_feedback({"prediction_id": old, "sale_price": 5e5, "sold_at": "2026-12-01"}, NOW)
    assert "retention" in problems(error)["prediction_id"]
    # And a window of 500 days accepts it
    assert labels.parse_feedback({"prediction_id": old, "sale_price": 5e5, "sold_at": "2026-12-01"}, NOW, 500)


def test_an_id_from_the_future_is_refused() -> None:
    future = prediction_id(NOW + timedelta(days=3))
    with pytest.raises(InvalidInput) as error:
        labels.parse_label({"prediction_id": future, "sale_price": 5e5, "sold_at": "2026-12-01"}, NOW)
    assert "future" in problems(error)["prediction_id"]


def test_a_labels_body_reports_every_bad_label_by_index() -> None:
    good = {"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01"}
    body = {"labels": [good, {**good, "sale_price": -1}, "nope"]}
    with pytest.raises(InvalidInput) as error:
        labels.parse_feedback(body, NOW)
    assert set(problems(error)) == {"labels[1].sale_price", "labels[2]"}


@pytest.mark.parametrize(
    ("body", "field"),
    [({"labels": []}, "labels"), ({"labels": {}}, "labels"), ({"labels": [], "x": 1}, "x"), ([], "body")],
)
def test_a_malformed_labels_body_is_refused(body: object, field: str) -> None:
    with pytest.raises(InvalidInput) as error:
        labels.parse_feedback(body, NOW)
    assert field in problems(error)


def test_more_labels_than_the_limit_is_too_large() -> None:
    good = {"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01"}
    with pytest.raises(PayloadTooLarge):
        labels.parse_feedback({"labels": [good] * 3}, NOW, max_labels=2)


def test_a_queue_message_round_trips() -> None:
    # Given the labels of one request written as a queue message
    parsed = labels.parse_feedback(
        {
            "labels": [
                {"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01"},
                {"city": "Austin_TX", "house_id": "h-1", "sale_price": 3e5, "sold_at": "2026-12-02"},
            ]
        },
        NOW,
    )
    text = labels.label_message(parsed, NOW)
    # Then reading it back gives the same labels
    assert labels.parse_label_message(text, NOW) == parsed
    assert json.loads(text)["received_at"] == "2026-12-07T03:00:00.000Z"


@pytest.mark.parametrize("text", ["not json", "{}", '{"format": 2, "labels": []}', '{"format": 1, "labels": [1]}'])
def test_a_bad_queue_message_is_invalid_input(text: str) -> None:
    with pytest.raises(InvalidInput):
        labels.parse_label_message(text, NOW)


def test_a_csv_file_yields_labels_and_reports_bad_rows_by_line() -> None:
    # Given a CSV file with a header, two good rows and two bad ones
    text = (
        "prediction_id,city,house_id,sale_price,sold_at\n"
        f"{RECENT},,,500000,2026-12-01\n"
        ",Austin_TX,h-1,300000,2026-12-02\n"
        f"{RECENT},,,free,2026-12-01\n"
        ",Austin_TX,h-2,300000,2026-12-02,extra\n"
    )
    rows = list(labels.parse_label_file("p/labels/batch.csv", text.encode(), NOW))
    # Then the good rows are labels and each bad one names its line
    assert [r.label is not None for r in rows] == [True, True, False, False]
    assert rows[1].label == labels.Label("Austin_TX", 300000.0, "2026-12-02", None, "h-1")
    assert rows[2].problems[0].field == "line 4.sale_price"
    assert rows[3].problems[0].field == "line 5"


def test_a_gzipped_json_lines_file_yields_labels_and_reports_bad_lines() -> None:
    text = (
        json.dumps({"prediction_id": RECENT, "sale_price": 5e5, "sold_at": "2026-12-01"})
        + "\n\n{oops\n"
        + json.dumps({"prediction_id": RECENT, "sale_price": 5e5})
        + "\n"
    )
    rows = list(labels.parse_label_file("p/labels/day.jsonl.gz", gzip.compress(text.encode()), NOW))
    assert [r.line for r in rows] == [1, 3, 4]
    assert rows[0].label is not None
    assert rows[0].label.prediction_id == RECENT
    assert rows[1].problems[0].field == "line 3"
    assert rows[2].problems[0].field == "line 4.sold_at"
