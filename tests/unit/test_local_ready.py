"""Ready files: each child's shape survives the trip through JSON, and a malformed file names its fields."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from local import ready
from local.ready import DispatcherReady, EventQueue, HttpApiReady, MotoReady


def test_moto_facts_round_trip_with_their_queues_typed(tmp_path: Path) -> None:
    # Given moto's facts with one event queue and no journal
    queue = EventQueue("ModelSyncFunction", "http://q/1", "arn:aws:sqs:us-east-1:123456789012:q", "", 3)
    facts = MotoReady(endpoint_url="http://127.0.0.1:1", queues=(queue,))
    # When they are written and parsed back
    path = tmp_path / "moto.json"
    ready.write(path, facts)
    parsed = ready.parse(MotoReady, json.loads(path.read_text()))
    # Then nothing is lost, the queue is an EventQueue again, and the absent journal report is not written
    assert parsed == facts
    assert isinstance(parsed.queues[0], EventQueue)
    assert "replayed" not in json.loads(path.read_text())


def test_http_api_and_dispatcher_facts_round_trip(tmp_path: Path) -> None:
    api = HttpApiReady(port=8080, url="http://127.0.0.1:8080", pid=42, sandboxes=2)
    dispatcher = DispatcherReady(function="ModelSyncFunction", queue_url="http://q/1")
    ready.write(tmp_path / "api.json", api)
    ready.write(tmp_path / "dispatcher.json", dispatcher)
    assert ready.parse(HttpApiReady, json.loads((tmp_path / "api.json").read_text())) == api
    assert ready.parse(DispatcherReady, json.loads((tmp_path / "dispatcher.json").read_text())) == dispatcher


def test_a_malformed_ready_file_names_the_missing_and_unknown_fields() -> None:
    with pytest.raises(
        ValueError,
        match=r"HttpApiReady ready file: missing fields \['pid', 'sandboxes'\], "
        r"unknown fields \['extra'\]",
    ):
        ready.parse(HttpApiReady, {"port": 1, "url": "http://127.0.0.1:1", "extra": True})


def test_a_nested_queue_missing_a_field_is_named() -> None:
    with pytest.raises(ValueError, match=r"EventQueue ready file: missing fields \['max_attempts'\]"):
        ready.parse(
            MotoReady,
            {
                "endpoint_url": "http://127.0.0.1:1",
                "queues": [{"function_id": "F", "queue_url": "u", "queue_arn": "a", "on_failure_url": ""}],
            },
        )
