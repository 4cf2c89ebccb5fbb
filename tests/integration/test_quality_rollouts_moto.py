"""A rollout's evidence through the quality function's real handler and wiring: S3, DynamoDB and SQS
on moto, the candidate scored over a real socket by an InvokeEndpoint stand-in (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``),
every call checked against QualityFunctionRole (conftest)."""

from __future__ import annotations

import gzip
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from house_prices import captures, labels
from house_prices.registry import ModelRegistry
from house_prices.rollout_evidence import RolloutEvidence, evidence_version
from quality import handler
from quality.shadow import parse_records
from tests.lambda_contexts import lambda_context
from tests.model_versions import model_version
from tests.quality_doubles import (
    BUCKET,
    CANDIDATE,
    CITY,
    LAYOUT,
    LIVE,
    QUALITY_TABLE,
    REGISTRY_TABLE,
    ROW,
    QualityAws,
    prediction_ids,
)

pytestmark = pytest.mark.filterwarnings("ignore:No application metrics to publish:UserWarning")
ENDPOINT = "house-prices-mme"
CANDIDATE_PRICE = 105_000.0


class Endpoint(ThreadingHTTPServer):
    """InvokeEndpoint's wire protocol: POST /endpoints/{name}/invocations, CSV in, a JSON list of prices out."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Invocation)
        self.calls: list[tuple[str, int]] = []  # (TargetModel, rows)
        self.failing: set[str] = set()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class _Invocation(BaseHTTPRequestHandler):
    server: Endpoint

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", 0))).decode()
        target = self.headers.get("X-Amzn-SageMaker-Target-Model", "")
        self.server.calls.append((target, body.count("\n")))
        if target in self.server.failing or self.path != f"/endpoints/{ENDPOINT}/invocations":
            payload, status = {"ErrorCode": "ModelError", "Message": f"cannot load {target}"}, 424
            self.send_response(status)
            self.send_header("x-amzn-ErrorType", "ModelError:http://internal.amazon.com/coral/com.amazonaws.sagemaker/")
        else:
            payload, status = [CANDIDATE_PRICE] * body.count("\n"), 200
            self.send_response(status)
        raw = json.dumps(payload).encode()
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.end_headers()
        self.wfile.write(raw)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class World:
    def __init__(self, s3: Any, dynamodb: Any, endpoint: Endpoint) -> None:
        self.s3, self.dynamodb, self.endpoint = s3, dynamodb, endpoint

    def capture(
        self,
        made_at: datetime,
        prices: list[float],
        *,
        mode: str,
        arm: str = "live",
        sampled: bool = True,
        version: str = LIVE,
        house_ids: list[str | None] | None = None,
        name: str = "stream-1",
    ) -> tuple[list[str], str]:
        """One request's tagged capture lines delivered as Firehose does; returns its ids and the object key."""
        pids = prediction_ids(made_at, len(prices))
        lines = captures.capture_lines(
            city=CITY,
            version=version,
            request_id="req-1",
            prediction_ids=pids,
            rows=[ROW] * len(prices),
            prices=prices,
            house_ids=house_ids or [None] * len(prices),
            rollout=captures.rollout_tag(CANDIDATE, mode, arm, sampled),
            latency_ms=12.0,
        )
        key = LAYOUT.capture_prefix(CITY, made_at.date()) + f"{name}-{made_at:%Y-%m-%d-%H-%M-%S}-x.jsonl.gz"
        self.s3.put_object(Bucket=BUCKET, Key=key, Body=gzip.compress(("\n".join(lines) + "\n").encode()))
        return pids, key

    def evidence(self) -> RolloutEvidence:
        item = self.dynamodb.get_item(
            TableName=QUALITY_TABLE, Key={"city": {"S": CITY}, "version": {"S": evidence_version(CANDIDATE)}}
        ).get("Item", {})
        return RolloutEvidence.from_item({k: float(v["N"]) for k, v in item.items() if "N" in v})


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    endpoint = Endpoint()
    threading.Thread(target=endpoint.serve_forever, daemon=True).start()
    yield endpoint
    endpoint.shutdown()
    endpoint.server_close()


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch, endpoint: Endpoint, quality_aws: QualityAws) -> World:
    monkeypatch.setenv("ENDPOINT_NAME", ENDPOINT)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", endpoint.url)
    monkeypatch.setenv("SHADOW_MAX_ATTEMPTS", "1")
    registry = ModelRegistry(quality_aws.dynamodb, REGISTRY_TABLE)
    registry.record_version(model_version(CITY, LIVE, "live"))
    registry.record_version(model_version(CITY, CANDIDATE, "candidate"))
    return World(quality_aws.s3, quality_aws.dynamodb, endpoint)


def invoke(event: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = handler.lambda_handler(event, lambda_context("QualityFunction"))
    return result


def s3_event(key: str) -> dict[str, Any]:
    return {
        "Records": [
            {"eventSource": "aws:s3", "s3": {"bucket": {"name": BUCKET}, "object": {"key": key}}},
        ]
    }


def sqs_event(message_id: str, *items: dict[str, Any]) -> dict[str, Any]:
    now = datetime.now(UTC)
    body = labels.label_message([labels.parse_label(item, now) for item in items], now)
    return {"Records": [{"messageId": message_id, "body": body, "eventSource": "aws:sqs", "receiptHandle": "r"}]}


def test_a_shadow_object_is_scored_once_and_its_labels_become_paired_evidence_once(world: World) -> None:
    # Given a shadow request of three sampled houses captured two hours ago (live priced each 110k)
    made_at = datetime.now(UTC) - timedelta(hours=2)
    pids, key = world.capture(made_at, [110_000.0] * 3, mode="shadow")
    # When its object's S3 event is handled, then redelivered
    first = invoke(s3_event(key))
    invoke(s3_event(key))
    # Then the candidate priced the three rows in ONE InvokeEndpoint of its TargetModel, once
    assert world.endpoint.calls == [(f"{CITY}.{CANDIDATE}.tar.gz", 3)]
    assert first["shadow_scored"] == 3
    # And the shadow records sit at the source object's deterministic key, paired by prediction id
    shadow_key = LAYOUT.shadow_key(CITY, made_at.date(), key)
    records = list(parse_records(world.s3.get_object(Bucket=BUCKET, Key=shadow_key)["Body"].read()))
    assert [(r.prediction_id, r.candidate_price, r.live_price) for r in records] == [
        (pid, CANDIDATE_PRICE, 110_000.0) for pid in pids
    ]
    # And the evidence counts one live call (the request) and one candidate call (the batch)
    evidence = world.evidence()
    assert (evidence.live_requests.requests, evidence.candidate_requests.requests) == (1, 1)
    assert evidence.candidate_latency.count == 1
    # When the three labels (100k) arrive, and the message is redelivered
    items = [{"prediction_id": pid, "sale_price": 100_000, "sold_at": made_at.date().isoformat()} for pid in pids]
    assert invoke(sqs_event("m1", *items)) == {"batchItemFailures": []}
    assert invoke(sqs_event("m1", *items)) == {"batchItemFailures": []}
    # Then the evidence holds three pairs, each d = 5 % − 10 %, counted once
    paired = world.evidence().paired
    assert paired.n == 3
    assert paired.sum_diff == pytest.approx(-0.15)


def test_a_failing_candidate_is_its_error_and_its_labels_count_unpaired(world: World) -> None:
    # Given a candidate the endpoint cannot load, and a shadow object of two sampled houses
    world.endpoint.failing.add(f"{CITY}.{CANDIDATE}.tar.gz")
    made_at = datetime.now(UTC) - timedelta(hours=2)
    pids, key = world.capture(made_at, [110_000.0] * 2, mode="shadow")
    # When the object is handled: not an error of the invocation
    report = invoke(s3_event(key))
    # Then the candidate's failed call is its evidence, nothing is written, and the object is claimed
    evidence = world.evidence()
    assert (evidence.candidate_requests.requests, evidence.candidate_requests.errors) == (1, 1)
    assert report["shadow_failed_calls"] == 1
    assert "Contents" not in world.s3.list_objects_v2(Bucket=BUCKET, Prefix=LAYOUT.shadow_captures_prefix)
    invoke(s3_event(key))
    assert len(world.endpoint.calls) == 1
    # And the labels (older than the capture wait) are joined without a pair
    items = [{"prediction_id": pid, "sale_price": 100_000, "sold_at": made_at.date().isoformat()} for pid in pids]
    assert invoke(sqs_event("m1", *items)) == {"batchItemFailures": []}
    assert world.evidence().paired.n == 0


def test_a_canary_house_label_reaches_its_arm_through_the_house_index(world: World) -> None:
    # Given a canary request whose house was priced by the candidate (120k), indexed by its house_id
    made_at = datetime.now(UTC) - timedelta(hours=2)
    _, key = world.capture(
        made_at, [120_000.0], mode="canary", arm="candidate", version=CANDIDATE, house_ids=["listing-9"]
    )
    invoke(s3_event(key))
    # When a label names the house (100k)
    item = {"city": CITY, "house_id": "listing-9", "sale_price": 100_000, "sold_at": made_at.date().isoformat()}
    assert invoke(sqs_event("m1", item)) == {"batchItemFailures": []}
    # Then the candidate's arm holds its 20 % error, and no InvokeEndpoint was needed
    evidence = world.evidence()
    assert (evidence.candidate.n, evidence.candidate.sum_ape) == (1, pytest.approx(0.2))
    assert world.endpoint.calls == []
