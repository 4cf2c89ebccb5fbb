"""router.capture.PredictionCapture: sampling per prediction, one write per request, never a 500."""

from __future__ import annotations

import io
import json
import random
from typing import Any

import pytest

from house_prices import captures
from house_prices.observability import logger
from router.capture import PredictionCapture
from tests.router_doubles import LIVE, SequentialIds

ROW = (2005, 3100, 4, 2.5, 1.1, 2)


def record(capture: PredictionCapture, count: int, house_ids: list[str | None] | None = None) -> int:
    return capture.record(
        city="Chicago_IL",
        version=LIVE,
        request_id="req-7",
        prediction_ids=SequentialIds.expected("Chicago_IL", count),
        rows=[ROW] * count,
        prices=[float(i) for i in range(count)],
        house_ids=house_ids or [None] * count,
    )


class CountingStream(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, text: str) -> int:
        self.writes += 1
        return super().write(text)


def test_everything_is_recorded_by_default_in_one_write() -> None:
    # Given the default rate
    stream = CountingStream()
    capture = PredictionCapture(1.0, stream=stream)
    # When a request of three houses is recorded
    recorded = record(capture, 3, [None, "a", None])
    # Then one write carries one line holding all three, in order
    assert recorded == 3
    assert stream.writes == 1
    (line,) = stream.getvalue().splitlines()
    assert [p.price for p in captures.parse_capture_line(line)] == [0.0, 1.0, 2.0]


def test_rate_zero_records_nothing_and_writes_nothing() -> None:
    stream = CountingStream()
    assert record(PredictionCapture(0.0, stream=stream), 5) == 0
    assert stream.writes == 0


def test_sampling_is_per_prediction_and_keeps_each_prediction_whole() -> None:
    # Given a rate of 0.5 and a uniform source that alternates below and above it
    draws = iter([0.1, 0.9, 0.2, 0.8])
    stream = io.StringIO()
    capture = PredictionCapture(0.5, stream=stream, uniform=lambda: next(draws))
    # When four houses are recorded
    recorded = record(capture, 4, ["h0", "h1", "h2", "h3"])
    # Then the first and third are kept, with their own id, price and house id
    kept = captures.parse_capture_line(stream.getvalue())
    ids = SequentialIds.expected("Chicago_IL", 4)
    assert recorded == 2
    assert [(p.prediction_id, p.price, p.house_id) for p in kept] == [(ids[0], 0.0, "h0"), (ids[2], 2.0, "h2")]


def test_a_request_whose_houses_are_all_sampled_out_writes_nothing() -> None:
    stream = io.StringIO()
    assert record(PredictionCapture(0.3, stream=stream, uniform=lambda: 0.99), 3) == 0
    assert stream.getvalue() == ""


@pytest.mark.parametrize("rate", [0.05, 0.5])
def test_the_sampled_share_is_the_rate(rate: float) -> None:
    # Given a seeded uniform source and 20,000 predictions
    rng = random.Random(20261207)
    capture = PredictionCapture(rate, stream=io.StringIO(), uniform=rng.random)
    kept = sum(record(capture, 100) for _ in range(200))
    # Then the share kept is the rate within four standard deviations
    expected, sigma = 20_000 * rate, (20_000 * rate * (1 - rate)) ** 0.5
    assert abs(kept - expected) < 4 * sigma


@pytest.mark.parametrize("rate", [-0.1, 1.01])
def test_a_rate_outside_0_to_1_is_refused(rate: float) -> None:
    with pytest.raises(ValueError, match="between 0 and 1"):
        PredictionCapture(rate)


def test_a_failing_log_stream_never_fails_the_request(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given stdout that raises (a closed pipe)
    class Broken(io.StringIO):
        def write(self, text: str) -> int:
            raise BrokenPipeError("closed")

    warnings: list[Any] = []
    monkeypatch.setattr(logger, "warning", lambda *args, **kwargs: warnings.append(args))
    # When a request is recorded, Then nothing is raised, nothing counted, and the operator is told
    assert record(PredictionCapture(1.0, stream=Broken()), 2) == 0
    assert warnings == [("Could not record the predictions",)]


def test_the_default_stream_is_stdout_at_write_time(capsys: pytest.CaptureFixture[str]) -> None:
    # Lambda sends stdout to the function's log group: that is where the subscription filter reads
    record(PredictionCapture(1.0), 1)
    line = capsys.readouterr().out.strip()
    assert json.loads(line)["capture"] == "predictions"


def test_rollout_tags_go_on_the_line_and_read_back() -> None:
    # Given the candidate's side of a canary request, recorded with its tags
    stream = io.StringIO()
    tag = captures.rollout_tag("20261201T040000Z-c0ffee00", "canary", "candidate", True)
    PredictionCapture(1.0, stream=stream).record(
        city="Chicago_IL",
        version="20261201T040000Z-c0ffee00",
        request_id="req-18",
        prediction_ids=SequentialIds.expected("Chicago_IL", 2),
        rows=[ROW] * 2,
        prices=[1.0, 2.0],
        house_ids=[None, "h1"],
        rollout=tag,
        latency_ms=12.5,
    )
    # Then the line carries them once, and every prediction read back has them
    line = stream.getvalue()
    assert json.loads(line)["rollout"] == {
        "candidate": "20261201T040000Z-c0ffee00",
        "mode": "canary",
        "arm": "candidate",
        "sampled": True,
    }
    read = captures.parse_capture_line(line)
    assert {(r.version, r.latency_ms, r.candidate_error) for r in read} == {("20261201T040000Z-c0ffee00", 12.5, None)}
    assert all(r.rollout == tag for r in read)
