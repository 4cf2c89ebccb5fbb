"""template.yaml's RolloutFunction: its schedule, least-privilege role, log group and alarms, against the code."""

from __future__ import annotations

from typing import Any

import pytest

from house_prices.registry import ROLLOUT_INDEX
from local.scheduler import rate_seconds
from rollouts.handler import IN_PROGRESS_METRIC, METRIC_NAMES
from rollouts.logic import Outcome
from tests.sam_transform import decoded_template


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return decoded_template()


def props(template: dict[str, Any], logical_id: str) -> dict[str, Any]:
    return template["Resources"][logical_id]["Properties"]


def statements(template: dict[str, Any]) -> dict[str, dict[str, Any]]:
    role = props(template, "RolloutFunction")["Role"]["Fn::GetAtt"][0]
    return {s["Sid"]: s for p in props(template, role)["Policies"] for s in p["PolicyDocument"]["Statement"]}


def actions(statement: dict[str, Any]) -> set[str]:
    action = statement["Action"]
    return set(action) if isinstance(action, list) else {action}


def test_the_decider_runs_every_minute_and_ends_before_the_next_tick(template: dict[str, Any]) -> None:
    function = props(template, "RolloutFunction")
    assert (function["CodeUri"], function["Handler"]) == ("functions/rollouts/", "rollouts.handler.lambda_handler")
    [event] = function["Events"].values()
    # An EventBridge rule (its event carries `time`, the decision time), every minute
    assert event["Type"] == "Schedule"
    assert rate_seconds(event["Properties"]["Schedule"]) == 60
    assert function["Timeout"] < 60
    # A failed tick is not retried: the next minute is the retry
    assert function["EventInvokeConfig"]["MaximumRetryAttempts"] == 0
    group = template["Resources"][function["LoggingConfig"]["LogGroup"]["Ref"]]
    assert group["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


def test_the_role_lists_rollouts_by_the_index_writes_the_registry_and_only_reads_evidence(
    template: dict[str, Any],
) -> None:
    by_sid = statements(template)
    assert set(by_sid) == {"ListRollouts", "DecideRollouts", "ReadRolloutEvidence", "WriteOwnLogGroup", "Tracing"}
    # The running rollouts: one Query of the registry's sparse index, nothing else of it
    assert actions(by_sid["ListRollouts"]) == {"dynamodb:Query"}
    assert by_sid["ListRollouts"]["Resource"] == {"Fn::Sub": f"${{RegistryTable.Arn}}/index/{ROLLOUT_INDEX}"}
    # The registry's conditional writes (transactions of Updates and a history Put), no delete, no scan
    assert actions(by_sid["DecideRollouts"]) == {"dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem"}
    assert by_sid["DecideRollouts"]["Resource"] == {"Fn::GetAtt": ["RegistryTable", "Arn"]}
    # The evidence: read only
    assert actions(by_sid["ReadRolloutEvidence"]) == {"dynamodb:BatchGetItem"}
    assert by_sid["ReadRolloutEvidence"]["Resource"] == {"Fn::GetAtt": ["QualityTable", "Arn"]}
    # Metrics go out as EMF log lines: no PutMetricData, no wildcard
    every = set().union(*(actions(s) for s in by_sid.values()))
    assert not any(a.startswith("cloudwatch:") or a.endswith("*") for a in every)


def test_the_alarms_watch_the_metric_the_handler_publishes_and_the_functions_errors(template: dict[str, Any]) -> None:
    service = props(template, "RolloutFunction")["Environment"]["Variables"]["POWERTOOLS_SERVICE_NAME"]
    rolled_back = props(template, "RolloutsRolledBackAlarm")
    assert (rolled_back["Namespace"], rolled_back["MetricName"]) == ("HousePrices", METRIC_NAMES[Outcome.ROLLED_BACK])
    assert rolled_back["Dimensions"] == [{"Name": "service", "Value": service}]
    assert (rolled_back["Threshold"], rolled_back["ComparisonOperator"]) == (0, "GreaterThanThreshold")
    failing = props(template, "RolloutDeciderFailingAlarm")
    assert (failing["Namespace"], failing["MetricName"]) == ("AWS/Lambda", "Errors")
    assert failing["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "RolloutFunction"}}]
    # The four aggregate metrics (docs/rollouts.md), none of them per city
    assert {IN_PROGRESS_METRIC, *METRIC_NAMES.values()} >= {
        "RolloutsInProgress",
        "RolloutsPromoted",
        "RolloutsRolledBack",
        "RolloutsTimedOut",
    }
    assert template["Outputs"]["RolloutFunctionName"]["Value"] == {"Ref": "RolloutFunction"}
