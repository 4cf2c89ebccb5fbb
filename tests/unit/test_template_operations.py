"""template.yaml's operational pieces: SageMaker log groups, endpoint updates, alarms and dashboard."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from local.template import LocalResources, Template

ROOT = Path(__file__).resolve().parents[2]
ALARMS = {
    "FailedModelSyncEventsAlarm": "model-sync-failed-events",
    "ApiServerErrorRateAlarm": "api-5xx-rate",
    "ModelErrorAlarm": "model-errors",
    "EndpointServerErrorsAlarm": "endpoint-5xx",
    "EndpointModelErrorsAlarm": "endpoint-model-errors",
    "ModelUnloadsAlarm": "model-unloads",
    "ModelCacheHitAlarm": "model-cache-hit-ratio",
    "ModelLoadingWaitAlarm": "model-loading-wait",
    "LabelsUnknownAlarm": "labels-unknown",
    "DriftStartedAlarm": "drift-started",
    "QualityDegradedAlarm": "quality-degraded",
    "RolloutsRolledBackAlarm": "rollouts-rolled-back",
    "RolloutDeciderFailingAlarm": "rollout-decider-failing",
}
STACK = "house-prices"
TOPIC = "arn:aws:sns:us-east-1:123456789012:ops-pager"


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def local_resources(topic: str = "") -> LocalResources:
    return LocalResources(
        stack_name=STACK,
        parameters={"AlarmTopicArn": topic, "SourceDirS3Uri": "s3://deploy/code/sourcedir.tar.gz"},
        refs={"HttpApi": "a1b2c3d4e5", "RouterFunction": f"{STACK}-RouterFunction-XYZ"},
        attributes={
            "ModelSyncDeadLetterQueue.QueueName": f"{STACK}-ModelSyncDeadLetterQueue-XYZ",
            **{
                f"{alarm}.Arn": f"arn:aws:cloudwatch:us-east-1:123456789012:alarm:{STACK}-{name}"
                for alarm, name in ALARMS.items()
            },
        },
    )


def properties(template: Template, logical_id: str, resources: LocalResources | None = None) -> dict[str, Any]:
    resolved = template.resolve(template.resources[logical_id]["Properties"], resources or local_resources())
    assert isinstance(resolved, dict)
    return resolved


def test_sagemaker_log_groups_are_declared_with_the_retention_parameter(template: Template) -> None:
    endpoint_group = properties(template, "EndpointLogGroup")
    assert endpoint_group["LogGroupName"] == "/aws/sagemaker/Endpoints/house-prices-mme"
    training_group = template.resources["TrainingJobsLogGroup"]
    assert training_group["Properties"]["LogGroupName"] == "/aws/sagemaker/TrainingJobs"
    # Shared by the account's training jobs: optional, and kept when the stack goes.
    assert training_group["Condition"] == "CreateTrainingJobsLogGroup"
    assert training_group["DeletionPolicy"] == "Retain"
    for group in ("EndpointLogGroup", "TrainingJobsLogGroup"):
        assert template.resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}
    # SageMaker must not create the endpoint's group first (it would then exist without retention).
    assert template.resources["Endpoint"]["DependsOn"] == "EndpointLogGroup"


def test_endpoint_updates_keep_the_scaled_instance_count(template: Template) -> None:
    assert template.resources["Endpoint"]["Properties"]["RetainAllVariantProperties"] is True


def test_model_is_not_network_isolated_because_the_container_downloads_the_sourcedir(template: Template) -> None:
    # docs/deploy.md "Network isolation": the container fetches SAGEMAKER_SUBMIT_DIRECTORY from S3 itself.
    model = template.multi_model(local_resources())
    assert model.environment["SAGEMAKER_SUBMIT_DIRECTORY"].startswith("s3://")
    assert "EnableNetworkIsolation" not in template.resources[model.logical_id]["Properties"]


@pytest.mark.parametrize(("topic", "actions"), [("", None), (TOPIC, [TOPIC])])
def test_alarms_share_the_stack_prefix_and_notify_the_optional_topic(
    template: Template, topic: str, actions: list[str] | None
) -> None:
    # Given the alarm topic parameter empty or set
    resources = local_resources(topic)
    declared = {name for name in template.logical_ids("AWS::CloudWatch::Alarm")}
    assert declared == set(ALARMS)
    for logical_id, suffix in ALARMS.items():
        alarm = properties(template, logical_id, resources)
        # Then every alarm is found by the prefix `python -m ops status` uses
        assert alarm["AlarmName"] == f"{STACK}-{suffix}"
        # And notifies the topic only when there is one
        assert alarm.get("AlarmActions") == actions, logical_id
        assert alarm.get("OKActions") == actions, logical_id
    prefix = template.resolve(template.document["Outputs"]["AlarmNamePrefix"]["Value"], resources)
    assert prefix == f"{STACK}-"


def test_failed_events_alarm_watches_model_syncs_failure_destination(template: Template) -> None:
    destination = template.resources["ModelSyncFunction"]["Properties"]["EventInvokeConfig"]["DestinationConfig"]
    queue = destination["OnFailure"]["Destination"]["Fn::GetAtt"][0]
    alarm = template.resources["FailedModelSyncEventsAlarm"]["Properties"]
    assert alarm["Dimensions"] == [{"Name": "QueueName", "Value": {"Fn::GetAtt": [queue, "QueueName"]}}]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"


def test_model_error_alarm_reads_the_metric_the_router_emits(template: Template) -> None:
    from router.http_errors import ERROR_METRIC

    router_env = template.function("RouterFunction", local_resources()).environment
    alarm = properties(template, "ModelErrorAlarm")
    assert alarm["Namespace"] == router_env["POWERTOOLS_METRICS_NAMESPACE"]
    assert alarm["MetricName"] == ERROR_METRIC
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "kind": "ModelInvocationError",
        "service": router_env["POWERTOOLS_SERVICE_NAME"],
    }


def test_endpoint_alarms_watch_the_variant(template: Template) -> None:
    expected = {
        "EndpointServerErrorsAlarm": ("AWS/SageMaker", "Invocation5XXErrors"),
        "EndpointModelErrorsAlarm": ("AWS/SageMaker", "InvocationModelErrors"),
        "ModelUnloadsAlarm": ("AWS/SageMaker", "ModelUnloadingTime"),
        "ModelLoadingWaitAlarm": ("AWS/SageMaker", "ModelLoadingWaitTime"),
    }
    for logical_id, (namespace, metric) in expected.items():
        alarm = properties(template, logical_id)
        assert (alarm["Namespace"], alarm["MetricName"]) == (namespace, metric)
        assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
            "EndpointName": "house-prices-mme",
            "VariantName": "AllTraffic",
        }


def test_api_error_rate_alarm_divides_5xx_by_requests(template: Template) -> None:
    alarm = properties(template, "ApiServerErrorRateAlarm")
    by_id = {m["Id"]: m for m in alarm["Metrics"]}
    assert by_id["errors"]["MetricStat"]["Metric"]["MetricName"] == "5xx"
    assert by_id["requests"]["MetricStat"]["Metric"]["MetricName"] == "Count"
    assert [m["Id"] for m in alarm["Metrics"] if m["ReturnData"]] == ["rate"]
    assert "errors / requests" in by_id["rate"]["Expression"]


def test_dashboard_body_is_json_with_the_operational_widgets(template: Template) -> None:
    # Given the dashboard body as CloudFormation substitutes it
    body = json.loads(properties(template, "Dashboard")["DashboardBody"])
    titles = {widget["properties"]["title"] for widget in body["widgets"]}
    # Then it shows what an operator needs
    assert {
        "API latency (ms)",
        "API requests and errors",
        "Router duration (ms)",
        "Endpoint invocations and errors",
        "Model cache hit ratio and unloads",
        "Loaded models and load wait",
        "Endpoint memory and disk (%)",
        "Alarms",
    } <= titles
    metrics = {
        row[1]
        for widget in body["widgets"]
        for row in widget["properties"].get("metrics", [])
        if isinstance(row[0], str) and not row[0].startswith(".")
    }
    assert {
        "Latency",
        "Count",
        "Duration",
        "Invocations",
        "ModelCacheHit",
        "LoadedModelCount",
        "MemoryUtilization",
    } <= metrics
    alarms = next(w for w in body["widgets"] if w["type"] == "alarm")["properties"]["alarms"]
    assert len(alarms) == len(ALARMS)
    # And its widgets do not overlap on the 24-column grid
    cells = [
        (x, y)
        for w in body["widgets"]
        for x in range(w["x"], w["x"] + w["width"])
        for y in range(w["y"], w["y"] + w["height"])
    ]
    assert len(cells) == len(set(cells))
    assert all(w["x"] + w["width"] <= 24 for w in body["widgets"])
