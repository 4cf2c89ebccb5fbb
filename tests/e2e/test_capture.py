"""Prediction capture on the local stack: prices through the HTTP API, then their records in the local S3
under naming.KeyLayout's capture layout, delivered by local/log_delivery.py as Firehose would."""

from __future__ import annotations

import time
from typing import Any

import httpx
import pytest

from house_prices import captures, ids
from house_prices.captures import CapturedPrediction
from house_prices.naming import KeyLayout
from local.stack import LocalStack
from tests.e2e.stack_harness import CITIES, houses

pytestmark = pytest.mark.slow

# The session stack buffers captures for 1 s (StackConfig.capture_buffer_seconds); allow for a busy machine.
DELIVERY_TIMEOUT_SECONDS = 15


def captured(stack: LocalStack, prefix: str) -> dict[str, CapturedPrediction]:
    """Every captured prediction under ``prefix``, by prediction id."""
    s3 = stack.client("s3")
    found: dict[str, CapturedPrediction] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=stack.info.bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            body = s3.get_object(Bucket=stack.info.bucket, Key=item["Key"])["Body"].read()
            found.update((p.prediction_id, p) for p in captures.read_capture_object(body))
    return found


def wait_for_records(stack: LocalStack, prefixes: set[str], wanted: set[str]) -> dict[str, CapturedPrediction]:
    deadline = time.monotonic() + DELIVERY_TIMEOUT_SECONDS
    while True:
        found = {pid: p for prefix in prefixes for pid, p in captured(stack, prefix).items() if pid in wanted}
        if set(found) == wanted or time.monotonic() > deadline:
            return found
        time.sleep(0.25)


def test_priced_houses_are_found_by_prediction_id_under_the_capture_layout(stack: LocalStack, trained: dict) -> None:
    # Given houses for two live cities, some carrying the caller's house id
    answers: dict[str, dict[str, Any]] = {}
    sent: dict[str, dict[str, Any]] = {}
    for city in CITIES[:2]:
        batch = houses(city, 3, seed=11)
        batch[1]["house_id"] = f"{city}-listing-1"
        # When they are priced through the HTTP API
        started = time.monotonic()
        response = httpx.post(f"{stack.info.api_url}/locations/{city}/predictions", json={"houses": batch}, timeout=30)
        assert response.status_code == 200, response.text
        body = response.json()
        assert [p.get("house_id") for p in body["predictions"]] == [None, f"{city}-listing-1", None]
        for house, prediction in zip(batch, body["predictions"], strict=True):
            answers[prediction["prediction_id"]] = {**prediction, "version": body["model"]["version"], "city": city}
            sent[prediction["prediction_id"]] = house
    # Then, within seconds, each prediction is in S3 under city=<its city>/date=<its id's UTC day>/
    layout = KeyLayout(stack.info.prefix)
    partitions = {
        layout.capture_prefix(parts.city, parts.timestamp.date().isoformat())
        for parts in map(ids.parse_prediction_id, answers)
    }
    records = wait_for_records(stack, partitions, set(answers))
    waited = time.monotonic() - started
    assert set(records) == set(answers), f"missing after {waited:.1f} s: {sorted(set(answers) - set(records))}"
    # with what the API answered, the model that answered it, and the features the model got
    for prediction_id, record in records.items():
        answer = answers[prediction_id]
        assert (record.city, record.version, record.price, record.house_id) == (
            answer["city"],
            answer["version"],
            answer["price"],
            answer.get("house_id"),
        )
        assert record.features == {k: v for k, v in sent[prediction_id].items() if k != "house_id"}
        assert record.request_id  # API Gateway's request id
