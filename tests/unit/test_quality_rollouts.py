"""quality: a rollout's evidence from capture objects (calls, shadow scoring) and from labels."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from house_prices import labels, schema
from house_prices.captures import CapturedPrediction
from house_prices.labels import Label
from house_prices.live_quality import COUNT
from house_prices.naming import KeyLayout
from house_prices.rollout_evidence import RolloutEvidence
from house_prices.rollout_stats import PairedStats, latency_bucket
from quality.logic import Outcome, QualityService
from quality.rollout_labels import RolloutLabels, ShadowRecord
from quality.shadow import RolloutCaptures, csv_chunks, encode_records, parse_records
from tests.quality_doubles import (
    CANDIDATE,
    CITY,
    LIVE,
    ROW,
    FakeCaptureObjects,
    FakeEvidenceLedger,
    FakeLabelStore,
    FakeOffline,
    FakeScorer,
    FakeShadowBucket,
    prediction_ids,
    tagged_lines,
)

NOW = datetime(2026, 12, 7, 3, 0, tzinfo=UTC)
WAIT = timedelta(minutes=15)
LAYOUT = KeyLayout("p")
KEY = "p/captures/city=Chicago_IL/date=2026-12-07/s-1-2026-12-07-02-50-00-u.jsonl.gz"
SHADOW_KEY = "p/shadow_captures/city=Chicago_IL/date=2026-12-07/s-1-2026-12-07-02-50-00-u.jsonl.gz"


class World:
    def __init__(self, scorer: FakeScorer | None = None, body_limit: int = schema.MAX_ENDPOINT_BODY_BYTES) -> None:
        self.objects = FakeCaptureObjects()
        self.scorer = scorer or FakeScorer()
        self.shadows = FakeShadowBucket()
        self.ledger = FakeEvidenceLedger()
        self.store = FakeLabelStore()
        self.quality = QualityService(
            self.objects,
            self.store,
            FakeOffline(),
            retention_days=365,
            capture_wait=WAIT,
            capture_objects=self.objects,
            captures_prefix="p/captures/",
            rollouts=RolloutCaptures(
                self.ledger, LAYOUT, scorer=self.scorer, writer=self.shadows, clock=Ticks(), body_limit=body_limit
            ),
            rollout_labels=RolloutLabels(self.shadows, WAIT),
        )

    def deliver(self, predictions: list[CapturedPrediction], key: str = KEY) -> dict[str, int]:
        self.objects.objects[key] = predictions
        self.quality.new_invocation()
        return self.quality.handle_capture_object("bucket", key, NOW).as_dict()

    def label(self, pid: str, sale: float, now: datetime = NOW, source: str = "sqs:m1") -> Outcome:
        self.quality.new_invocation()
        return self.quality.process([label(pid, sale)], source, now).outcomes.most_common(1)[0][0]


class Ticks:
    """A clock that advances 40 ms per reading: every call takes 40 ms."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        self.now += 0.04
        return self.now


def label(pid: str, sale: float) -> Label:
    return labels.parse_label({"prediction_id": pid, "sale_price": sale, "sold_at": "2026-12-06"}, NOW)


# --- operational evidence from tagged lines ---------------------------------------------------------


def test_a_canary_objects_calls_are_counted_once_per_request_and_arm_with_their_latency() -> None:
    # Given a canary request whose candidate group spans two lines of one call, and whose live group is one line,
    # and a second request whose candidate call failed (its houses priced by live)
    world = World()
    pids = prediction_ids(NOW - timedelta(minutes=10), 5)
    lines = [
        *tagged_lines(pids[:1], [1.0], mode="canary", arm="candidate", version=CANDIDATE, latency_ms=30.0),
        *tagged_lines(pids[1:2], [1.0], mode="canary", arm="candidate", version=CANDIDATE, latency_ms=30.0),
        *tagged_lines(pids[2:3], [1.0], mode="canary", arm="live", sampled=False, latency_ms=10.0),
        *tagged_lines(pids[3:], [1.0, 1.0], mode="canary", request_id="req-2", latency_ms=11.0, candidate_error="X"),
    ]
    # When the object is delivered
    report = world.deliver(lines)
    # Then live made two calls (10 ms, 11 ms), the candidate two (one of 30 ms, one failed), counted once
    evidence = world.ledger.evidence()
    assert (evidence.live_requests.requests, evidence.live_requests.errors) == (2, 0)
    assert (evidence.candidate_requests.requests, evidence.candidate_requests.errors) == (2, 1)
    assert evidence.candidate_latency.buckets[latency_bucket(30.0)] == 1
    assert evidence.live_latency.count == 2
    assert report["rollout_calls"] == 4
    # And no shadow scoring happened in canary mode
    assert world.scorer.calls == []
    assert world.shadows.writes == 0
    # When the same object is delivered again, then nothing is counted twice
    assert world.deliver(lines)["rollout_redelivered"] == 1
    assert world.ledger.evidence() == evidence


def test_an_object_without_tagged_lines_claims_nothing() -> None:
    world = World()
    untagged = [p._replace(rollout=None) for p in tagged_lines(prediction_ids(NOW, 2), [1.0, 2.0], mode="shadow")]
    assert world.deliver(untagged)["rollout_calls"] == 0
    assert world.ledger.ledger == {}


# --- shadow scoring ---------------------------------------------------------------------------------


def test_sampled_shadow_rows_are_scored_in_one_call_and_written_paired_by_prediction_id() -> None:
    # Given a shadow request of four houses, three sampled (in two lines of one request) and one not
    world = World(FakeScorer(price=123_000.0))
    pids = prediction_ids(NOW - timedelta(minutes=10), 4)
    lines = [
        *tagged_lines(pids[:2], [200_000.0, 210_000.0], mode="shadow", sampled=True),
        *tagged_lines(pids[2:3], [220_000.0], mode="shadow", sampled=True),
        *tagged_lines(pids[3:], [230_000.0], mode="shadow", sampled=False),
    ]
    # When its object is delivered
    report = world.deliver(lines)
    # Then the candidate priced the three sampled houses in ONE InvokeEndpoint of its TargetModel
    assert world.scorer.calls == [(f"{CITY}.{CANDIDATE}.tar.gz", 3)]
    assert report["shadow_scored"] == 3
    # And the records went to the deterministic key of the source object, paired by prediction id
    records = list(parse_records(world.shadows.objects[SHADOW_KEY]))
    assert records == [
        ShadowRecord(pids[0], CANDIDATE, 123_000.0, LIVE, 200_000.0),
        ShadowRecord(pids[1], CANDIDATE, 123_000.0, LIVE, 210_000.0),
        ShadowRecord(pids[2], CANDIDATE, 123_000.0, LIVE, 220_000.0),
    ]
    # And the evidence holds one live call (the request) and one candidate call of 40 ms (the shadow batch)
    evidence = world.ledger.evidence()
    assert (evidence.live_requests.requests, evidence.candidate_requests.requests) == (1, 1)
    assert evidence.candidate_latency.buckets[latency_bucket(40.0)] == 1
    # When the object is redelivered, then it is neither scored nor counted again
    world.deliver(lines)
    assert len(world.scorer.calls) == 1
    assert world.ledger.evidence() == evidence


def test_a_failing_candidate_is_its_error_and_the_object_is_still_claimed() -> None:
    # Given a candidate whose endpoint call fails
    world = World(FakeScorer(fail=True))
    pids = prediction_ids(NOW - timedelta(minutes=10), 2)
    # When a shadow object is delivered
    report = world.deliver(tagged_lines(pids, [200_000.0, 210_000.0], mode="shadow"))
    # Then the failure is the candidate's error, nothing is written, and the object is claimed
    evidence = world.ledger.evidence()
    assert (evidence.candidate_requests.requests, evidence.candidate_requests.errors) == (1, 1)
    assert (report["shadow_failed_calls"], report["shadow_scored"]) == (1, 0)
    assert world.shadows.objects == {}
    assert f"rollout#{KEY}" in world.ledger.ledger


def test_the_batch_splits_only_at_the_endpoints_body_limit() -> None:
    rows = [ROW] * 10
    line = len(schema.rows_to_csv([ROW]))
    # Under the limit: one body of every row
    assert [start for start, _ in csv_chunks(rows)] == [0]
    # At a limit of four rows: bodies of 4, 4 and 2 rows, none over the limit, all rows in order
    chunks = csv_chunks(rows, limit=4 * line)
    assert [start for start, _ in chunks] == [0, 4, 8]
    assert all(len(body) <= 4 * line for _, body in chunks)
    assert "".join(body for _, body in chunks) == schema.rows_to_csv(rows)


def test_a_batch_over_the_limit_makes_one_call_per_chunk() -> None:
    # Given an endpoint body limit of two rows and six sampled shadow rows
    world = World(body_limit=2 * len(schema.rows_to_csv([ROW])))
    pids = prediction_ids(NOW - timedelta(minutes=10), 6)
    # When the object is delivered, then three calls of two rows price them all, each the candidate's call
    report = world.deliver(tagged_lines(pids, [1.0] * 6, mode="shadow"))
    assert [rows for _, rows in world.scorer.calls] == [2, 2, 2]
    assert report["shadow_scored"] == 6
    assert world.ledger.evidence().candidate_requests.requests == 3


def test_shadow_records_round_trip_and_a_torn_line_is_skipped() -> None:
    record = ShadowRecord("01M9764XR3HWF8CHSGVHCNWQHV-Chicago_IL", CANDIDATE, 1.5, LIVE, 2.5)
    assert list(parse_records(encode_records([record]))) == [record]
    assert encode_records([record]) == encode_records([record])  # the same bytes: a rescore rewrites the same object
    assert list(parse_records(b'{"prediction_id": "x"}\nnot json\n')) == []


def test_the_shadow_key_is_the_source_objects_name_under_its_partition() -> None:
    assert LAYOUT.shadow_key(CITY, "2026-12-07", KEY) == SHADOW_KEY
    assert LAYOUT.shadow_key(CITY, "2026-12-07", "p/captures/city=Chicago_IL/date=2026-12-07/obj") == (
        "p/shadow_captures/city=Chicago_IL/date=2026-12-07/obj.jsonl.gz"
    )
    # Never under the captures/ prefix that triggers the quality function
    assert not SHADOW_KEY.startswith(LAYOUT.captures_prefix)
    with pytest.raises(ValueError, match="names a file"):
        LAYOUT.shadow_key(CITY, "2026-12-07", ".gz")


# --- labels -----------------------------------------------------------------------------------------


def test_a_shadow_label_adds_a_paired_difference_in_the_claiming_step() -> None:
    # Given a sampled shadow prediction (live 110k) scored by the candidate (105k)
    world = World(FakeScorer(price=105_000.0))
    pid = prediction_ids(NOW - timedelta(hours=2), 1)[0]
    world.deliver(tagged_lines([pid], [110_000.0], mode="shadow"))
    # When its label (100k) arrives, and is redelivered
    assert world.label(pid, 100_000.0) is Outcome.JOINED
    assert world.label(pid, 100_000.0) is Outcome.REDELIVERED
    # Then the evidence holds one pair, d = 5 % − 10 %, counted once; live quality counted the label as usual
    paired = world.store.evidence().paired
    assert paired == PairedStats.of(105_000.0, 110_000.0, 100_000.0)
    assert (paired.n, paired.sum_diff) == (1, pytest.approx(-0.05))
    assert world.store.live_item(CITY, LIVE)[COUNT] == 1
    assert world.quality.refresh_quality().paired == 0  # counted on the first invocation's refresh


def test_the_paired_count_is_reported_once_per_invocation() -> None:
    world = World(FakeScorer(price=105_000.0))
    pid = prediction_ids(NOW - timedelta(hours=2), 1)[0]
    world.deliver(tagged_lines([pid], [110_000.0], mode="shadow"))
    world.quality.new_invocation()
    world.quality.process([label(pid, 100_000.0)], "sqs:m1", NOW)
    report = world.quality.refresh_quality()
    assert (report.paired, report.unpaired) == (1, 0)
    assert world.quality.refresh_quality().paired == 0


def test_a_young_shadow_prediction_without_its_record_waits_and_an_old_one_counts_unpaired() -> None:
    # Given a sampled shadow prediction captured but not scored (its candidate failed)
    world = World(FakeScorer(fail=True))
    made_at = NOW - timedelta(minutes=5)
    pid = prediction_ids(made_at, 1)[0]
    world.deliver(tagged_lines([pid], [110_000.0], mode="shadow"))
    # When its label arrives while the prediction is younger than the capture wait: pending, nothing claimed
    assert world.label(pid, 100_000.0) is Outcome.PENDING
    assert world.store.ledger == {}
    # When it is retried after the wait: joined for live quality, without rollout evidence, reported unpaired
    assert world.label(pid, 100_000.0, now=made_at + WAIT + timedelta(seconds=1)) is Outcome.JOINED
    assert world.store.evidence() == RolloutEvidence()
    assert world.store.live_item(CITY, LIVE)[COUNT] == 1
    assert world.quality.refresh_quality().unpaired == 1


def test_a_canary_label_adds_to_the_arm_that_priced_the_house() -> None:
    # Given canary predictions: one by the candidate, one by live
    world = World()
    pids = prediction_ids(NOW - timedelta(hours=1), 2)
    world.deliver(
        [
            *tagged_lines(pids[:1], [120_000.0], mode="canary", arm="candidate", version=CANDIDATE),
            *tagged_lines(pids[1:], [90_000.0], mode="canary", arm="live", sampled=False, request_id="req-2"),
        ]
    )
    # When both are labelled 100k
    assert world.label(pids[0], 100_000.0) is Outcome.JOINED
    assert world.label(pids[1], 100_000.0) is Outcome.JOINED
    # Then each arm holds its own error (candidate 20 %, live 10 %), and no pair
    evidence = world.store.evidence()
    assert (evidence.candidate.n, evidence.candidate.sum_ape) == (1, pytest.approx(0.2))
    assert (evidence.live.n, evidence.live.sum_ape) == (1, pytest.approx(0.1))
    assert evidence.paired.n == 0


def test_an_unsampled_shadow_or_untagged_prediction_adds_no_evidence() -> None:
    world = World()
    pids = prediction_ids(NOW - timedelta(hours=1), 2)
    lines = tagged_lines(pids[:1], [110_000.0], mode="shadow", sampled=False)
    lines += [p._replace(rollout=None) for p in tagged_lines(pids[1:], [110_000.0], mode="shadow")]
    world.deliver(lines, key=KEY.replace("u.jsonl", "v.jsonl"))
    assert world.label(pids[0], 100_000.0) is Outcome.JOINED
    assert world.label(pids[1], 100_000.0) is Outcome.JOINED
    assert world.store.evidence() == RolloutEvidence()


def test_a_tag_naming_something_other_than_a_version_is_ignored() -> None:
    world = World()
    pid = prediction_ids(NOW - timedelta(hours=1), 1)[0]
    lines = [
        p._replace(rollout={**(p.rollout or {}), "candidate": "rollout#x"})
        for p in tagged_lines([pid], [1.0], mode="canary")
    ]
    assert world.deliver(lines)["rollout_calls"] == 0
    assert world.label(pid, 100_000.0) is Outcome.JOINED
    assert world.store.items.keys() == {(CITY, LIVE)}


def test_the_shadow_partition_is_read_once_per_invocation() -> None:
    world = World(FakeScorer(price=105_000.0))
    pids = prediction_ids(NOW - timedelta(hours=2), 3)
    world.deliver(tagged_lines(pids, [110_000.0] * 3, mode="shadow"))
    world.quality.new_invocation()
    world.quality.process([label(pid, 100_000.0) for pid in pids], "sqs:m1", NOW)
    assert world.shadows.reads == [(CITY, "2026-12-07")]
    assert world.store.evidence().paired.n == 3


def test_a_line_with_an_id_the_api_did_not_make_is_not_scored() -> None:
    # Given a sampled shadow line whose prediction id no label could name
    world = World()
    lines = [
        p._replace(prediction_id="id1-Chicago_IL") for p in tagged_lines(prediction_ids(NOW, 1), [1.0], mode="shadow")
    ]
    # When its object is delivered, then its call is counted but nothing is scored, and nothing fails
    report = world.deliver(lines)
    assert (report["rollout_calls"], report["shadow_scored"]) == (1, 0)
    assert world.scorer.calls == []
