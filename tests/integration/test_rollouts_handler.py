"""The rollout decider's real handler over real sockets: scheduled events -> registry and quality tables on the
threaded moto server (as the local stack runs it) -> promotions, rollbacks, time-outs in the registry, with the
history and the metrics; every call checked against RolloutFunctionRole (conftest)."""

from __future__ import annotations

import json
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import boto3
import pytest

from house_prices.errors import DependencyFailure
from house_prices.observability import metrics
from house_prices.registry import ModelRegistry
from house_prices.rollout_evidence import RolloutEvidence, add_update, evidence_version
from local.moto_services import MotoServer, client, create_table
from rollouts import handler
from tests.lambda_contexts import lambda_context
from tests.model_versions import model_version
from tests.rollout_doubles import CANDIDATE, DURATION, LIVE, STARTED_AT, scheduled_event, shadow_evidence

REGION = "us-east-1"
STACK = "house-prices"
REGISTRY_TABLE = f"{STACK}-RegistryTable"
QUALITY_TABLE = f"{STACK}-QualityTable"
CITY = "Chicago_IL"
NOW = STARTED_AT + timedelta(days=1)


class World:
    def __init__(self, url: str) -> None:
        self.url = url
        self.dynamodb = client("dynamodb", url, REGION)
        self.registry = ModelRegistry(self.dynamodb, REGISTRY_TABLE)

    def start(self, city: str = CITY, mode: Any = "shadow", policy: dict[str, Any] | None = None) -> None:
        for version in (LIVE, CANDIDATE):
            self.registry.record_version(model_version(city, version))
        self.registry.promote(city, LIVE)
        self.registry.start_rollout(
            city, CANDIDATE, mode, 1000, policy or {}, DURATION.total_seconds(), "model-sync", now=STARTED_AT
        )

    def add_evidence(self, evidence: RolloutEvidence, city: str = CITY) -> None:
        """ADD the evidence to its item as the quality function does (one UpdateItem ADD)."""
        expression, names, values = add_update(evidence.increments(), "2026-12-02T00:00:00+00:00")
        self.dynamodb.update_item(
            TableName=QUALITY_TABLE,
            Key={"city": {"S": city}, "version": {"S": evidence_version(CANDIDATE)}},
            UpdateExpression=expression,
            ExpressionAttributeNames=names,
            ExpressionAttributeValues={
                k: ({"S": v} if isinstance(v, str) else {"N": repr(v)}) for k, v in values.items()
            },
        )

    def tick(self, at: Any) -> dict[str, Any]:
        result: dict[str, Any] = handler.lambda_handler(scheduled_event(at), lambda_context("RolloutFunction"))
        return result


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> Iterator[World]:
    with MotoServer() as server:
        # moto's backends are process-wide: start from nothing, whatever ran before in this process.
        urllib.request.urlopen(urllib.request.Request(f"{server.url}/moto-api/reset", method="POST"), timeout=10)
        for name, value in {
            "AWS_ENDPOINT_URL_DYNAMODB": server.url,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_DEFAULT_REGION": REGION,
            "REGISTRY_TABLE": REGISTRY_TABLE,
            "QUALITY_TABLE": QUALITY_TABLE,
            "POWERTOOLS_SERVICE_NAME": "rollouts",
            "POWERTOOLS_METRICS_NAMESPACE": "HousePrices",
        }.items():
            monkeypatch.setenv(name, value)
        monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
        world = World(server.url)
        for table in (REGISTRY_TABLE, QUALITY_TABLE):
            create_table(world.dynamodb, table)
        handler.decider.cache_clear()
        yield world
    handler.decider.cache_clear()
    metrics.clear_metrics()


def emitted(capsys: pytest.CaptureFixture[str]) -> dict[str, Any]:
    """The metrics of the last EMF line the handler printed (name -> value), with its dimensions."""
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if '"_aws"' in line]
    last = lines[-1]
    [directive] = last["_aws"]["CloudWatchMetrics"]
    names = [m["Name"] for m in directive["Metrics"]]
    values = {name: last[name][-1] if isinstance(last[name], list) else last[name] for name in names}
    return {"dimensions": directive["Dimensions"], **values}


def test_a_better_candidate_is_promoted_recorded_and_counted(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a shadow rollout with 400 paired labels where the candidate errs 10 % less than live
    world.start()
    world.add_evidence(shadow_evidence(400, worse_by=-0.10))
    # When the schedule fires
    result = world.tick(NOW)
    # Then the candidate is live, the old live on standby
    assert result["promoted"] == 1
    assert world.registry.live_model(CITY).version == CANDIDATE
    assert world.registry.live_model(CITY).rollout is None
    assert world.registry.version(CITY, LIVE).status == "standby"
    # And the history records the decision at the event's time, by the decider, with its numbers
    promoted = next(e for e in world.registry.rollout_history(CITY) if e.action == "promoted")
    assert (promoted.actor, promoted.at) == ("rollouts", "2026-12-02T05:00:00+00:00")
    assert promoted.evidence["evidence"]["paired_labels"] == 400
    assert promoted.evidence["guards"]["accuracy"]["p_promote"] <= 0.05
    # And the aggregate metrics say so, without a city dimension
    published = emitted(capsys)
    assert published["RolloutsPromoted"] == 1.0
    assert published["RolloutsInProgress"] == 0.0
    assert not {"city", "version"} & {name for names in published["dimensions"] for name in names}


def test_a_worse_candidate_is_rolled_back_and_rejected(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.start()
    world.add_evidence(shadow_evidence(200, worse_by=0.10))
    result = world.tick(NOW)
    assert result["rolled_back"] == 1
    assert world.registry.live_model(CITY).version == LIVE
    assert world.registry.version(CITY, CANDIDATE).status == "rejected"
    assert emitted(capsys)["RolloutsRolledBack"] == 1.0


def test_evidence_added_in_pieces_is_read_whole(world: World) -> None:
    # Given the same 200 labels ADDed in four updates (as labels arrive)
    world.start()
    for seed in range(4):
        world.add_evidence(shadow_evidence(50, worse_by=0.10, seed=100 + seed))
    result = world.tick(NOW)
    # Then the decider saw all 200 (the ADDs summed in the item)
    rolled_back = next(e for e in world.registry.rollout_history(CITY) if e.action == "rolled_back")
    assert rolled_back.evidence["evidence"]["paired_labels"] == 200
    assert result["rolled_back"] == 1


def test_a_rerun_of_the_same_minute_changes_nothing(world: World) -> None:
    world.start()
    world.add_evidence(shadow_evidence(400, worse_by=-0.10))
    world.tick(NOW)
    again = world.tick(NOW)
    assert again["rollouts"] == 0
    assert [e.action for e in world.registry.rollout_history(CITY)].count("promoted") == 1


def test_a_rollout_without_evidence_waits_then_times_out(world: World, capsys: pytest.CaptureFixture[str]) -> None:
    world.start()
    assert world.tick(NOW)["waiting"] == 1
    assert emitted(capsys)["RolloutsInProgress"] == 1.0
    result = world.tick(STARTED_AT + DURATION)
    assert result["timed_out"] == 1
    assert world.registry.version(CITY, CANDIDATE).status == "standby"
    assert world.registry.live_model(CITY).version == LIVE
    assert emitted(capsys)["RolloutsTimedOut"] == 1.0


def test_an_unreadable_evidence_table_fails_the_tick_after_counting_it(
    world: World, capsys: pytest.CaptureFixture[str]
) -> None:
    # Given the quality table gone (the evidence cannot be read)
    world.start()
    world.dynamodb.delete_table(TableName=QUALITY_TABLE)
    # When the schedule fires, the invocation fails (Lambda's Errors metric; the next minute tries again)
    with pytest.raises(DependencyFailure, match="1 rollout"):
        world.tick(NOW)
    # And the rollout is still running, counted in progress and as a failed evaluation
    assert world.registry.live_model(CITY).rollout is not None
    published = emitted(capsys)
    assert published["RolloutEvaluationsFailed"] == 1.0
    assert published["RolloutsInProgress"] == 1.0
