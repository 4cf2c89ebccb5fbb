"""Shadow scoring on the local stack: the quality function prices a shadow rollout's sampled captures
with the candidate, labels become paired evidence, and the decider decides on it.

Its own stack (the decider on the test's clock only: schedules paused), one city trained once. The candidate
is a copy of the live model under a newer version (same artifact bytes, recorded ``standby``), so its prices
equal live's and every paired difference is 0: the always-valid test shows it not worse than live by the
margin as soon as the minimum sample is in, and the decider promotes it. The path is the real one:
``python -m ops rollout start`` → the router tags captures → Firehose stand-in delivers them → the quality
function scores the candidate (one InvokeEndpoint per object) and writes ``shadow_captures/`` → labels via
``POST /feedback`` join and pair → ``POST {scheduler}/ticks`` runs the decider.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from house_prices.naming import KeyLayout, make_version
from house_prices.registry import ModelRegistry
from local.demo import wait_for_live
from local.demo_quality import traffic
from local.demo_rollout import (
    HOUSES_PER_REQUEST,
    evidence_of,
    ops_cli,
    poll,
    post_labels,
    price_houses,
    tick,
    train_and_publish,
    wait_for_calls,
    write_stack_file,
)
from local.stack import LocalStack, StackConfig
from tests.e2e.stack_harness import QUIET

pytestmark = pytest.mark.slow

CITY = "Boise_ID"
HOUSES = 40
MIN_LABELS = 20


@dataclasses.dataclass(frozen=True)
class Setup:
    stack: LocalStack
    registry: ModelRegistry
    stack_file: Path
    live: str
    candidate: str


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    state = tmp_path_factory.mktemp("shadow")
    config = StackConfig(state_dir=state, write_stack_file=False, capture_buffer_seconds=1.0, schedules_paused=True)
    with LocalStack(config) as stack:
        registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
        train_and_publish(stack, {CITY: 1.0}, state / "v1", QUIET, n_estimators=10)
        live = wait_for_live(registry, (CITY,), QUIET, timeout=90)[CITY].version
        yield Setup(stack, registry, write_stack_file(stack, state / "stack.json"), live, copy_as_standby(stack, live))


def copy_as_standby(stack: LocalStack, live: str) -> str:
    """The live model's artifact under a newer version, recorded ``standby`` (what a retrain that the gate
    passed and no policy rolled out leaves): a candidate whose prices are live's."""
    registry = ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)
    layout, s3 = KeyLayout(stack.info.prefix), stack.client("s3")
    recorded = registry.version(CITY, live)
    candidate = make_version(datetime.now(UTC), "f" * 64)
    s3.copy_object(
        Bucket=stack.info.bucket,
        Key=layout.mme_key(CITY, candidate),
        CopySource={"Bucket": stack.info.bucket, "Key": layout.mme_key(CITY, live)},
    )
    registry.record_version(
        dataclasses.replace(
            recorded, version=candidate, status="standby", artifact_key=layout.mme_key(CITY, candidate), reason=""
        )
    )
    return candidate


def test_a_shadow_rollout_is_scored_paired_by_labels_and_decided(setup: Setup) -> None:
    stack, candidate = setup.stack, setup.candidate
    # Given a shadow rollout of the candidate on every house, started by the operator
    started = ops_cli(
        setup.stack_file,
        "rollout",
        "start",
        CITY,
        "--version",
        candidate,
        "--mode",
        "shadow",
        "--weight",
        "100",
        "--guard",
        f"min_labels={MIN_LABELS}",
    )
    assert (started["candidate_version"], started["mode"]) == (candidate, "shadow"), started
    # When houses are priced (live answers every one of them)
    with httpx.Client(timeout=30) as http:
        priced = price_houses(http, stack.info.api_url, CITY, traffic(CITY, HOUSES, seed=41))
        assert {p.version for p in priced} == {setup.live}
        # Then their capture objects reach the quality function, which counts the live calls and scores the
        # sampled rows with the candidate (one InvokeEndpoint per object), in the rollout's evidence
        requests = HOUSES // HOUSES_PER_REQUEST
        calls = wait_for_calls(stack, CITY, candidate, requests, timeout=90)
        assert calls["live_requests"] == requests
        assert 1 <= calls["candidate_requests"] <= requests
        assert calls["candidate_errors"] == 0
        # And the candidate's prices sit under shadow_captures/, one record per priced house
        assert shadow_records(stack) == HOUSES
        # When the houses' sales are reported
        today = datetime.now(UTC).date().isoformat()
        post_labels(
            http,
            stack.info.api_url,
            [
                {"prediction_id": p.prediction_id, "sale_price": round(p.price * 1.1, 2), "sold_at": today}
                for p in priced
            ],
        )
    # Then each label adds one paired difference (0: the candidate priced every house as live did)
    evidence: dict[str, Any] = poll(
        "the labels paired in the rollout's evidence",
        lambda: (found := evidence_of(stack, CITY, candidate)).get("paired_labels", 0) >= HOUSES and found,
        timeout=90,
    )
    assert evidence["paired_labels"] == HOUSES
    # When the decider runs (the scheduler's on-demand tick)
    report = tick(stack, datetime.now(UTC))
    # Then it promotes the candidate on that evidence, and the audit trail holds the numbers
    assert report["promoted"] == 1, report
    assert setup.registry.live_model(CITY).version == candidate
    (event,) = [e for e in setup.registry.rollout_history(CITY) if e.action == "promoted"]
    assert event.evidence["evidence"]["paired_labels"] == HOUSES
    assert event.evidence["guards"]["accuracy"]["difference"] == 0


def shadow_records(stack: LocalStack) -> int:
    from quality.shadow import parse_records

    s3, bucket = stack.client("s3"), stack.info.bucket
    prefix = KeyLayout(stack.info.prefix).shadow_prefix(CITY, datetime.now(UTC).date())
    keys = [item["Key"] for item in s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])]
    return sum(len(list(parse_records(s3.get_object(Bucket=bucket, Key=key)["Body"].read()))) for key in keys)
