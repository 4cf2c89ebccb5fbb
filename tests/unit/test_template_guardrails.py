"""template.yaml's AWS facts, checked against the SageMaker developer guide: metric namespaces and statistics of
the dashboard and alarms, thrashing alarms instead of a memory alarm, blue/green updates with automatic rollback,
the instance floor, and the account-wide training log group that the stack may create only where it is missing.

Source of the metric table: awsdocs/amazon-sagemaker-developer-guide at a869fa5, doc_source/monitoring-cloudwatch.md
("SageMaker Endpoint Invocation Metrics", "SageMaker Multi-Model Endpoint Metrics", "SageMaker Jobs and Endpoint
Metrics") and doc_source/multi-model-endpoint-cloudwatch-metrics.md.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from local.template import LocalResources, Template
from ops.deployment import as_list, parse_overrides
from tests.iam import Permission, is_allowed

ROOT = Path(__file__).resolve().parents[2]
STACK = "house-prices"
ACCOUNT = "123456789012"
_TIMES = frozenset({"Average", "Sum", "Minimum", "Maximum", "SampleCount"})
# Metric -> (namespace, the statistics the guide lists as valid; None where it lists none).
SAGEMAKER_METRICS: dict[str, tuple[str, frozenset[str] | None]] = {
    # AWS/SageMaker, "Endpoint Invocation Metrics"
    "Invocation4XXErrors": ("AWS/SageMaker", frozenset({"Average", "Sum"})),
    "Invocation5XXErrors": ("AWS/SageMaker", frozenset({"Average", "Sum"})),
    "InvocationModelErrors": ("AWS/SageMaker", frozenset({"Average", "Sum"})),
    "Invocations": ("AWS/SageMaker", frozenset({"Sum"})),
    "InvocationsPerInstance": ("AWS/SageMaker", frozenset({"Sum"})),
    "ModelLatency": ("AWS/SageMaker", _TIMES),
    "OverheadLatency": ("AWS/SageMaker", _TIMES),
    # AWS/SageMaker, "Multi-Model Endpoint Model Loading Metrics"
    "ModelLoadingWaitTime": ("AWS/SageMaker", _TIMES),
    "ModelUnloadingTime": ("AWS/SageMaker", _TIMES),
    "ModelDownloadingTime": ("AWS/SageMaker", _TIMES),
    "ModelLoadingTime": ("AWS/SageMaker", _TIMES),
    "ModelCacheHit": ("AWS/SageMaker", frozenset({"Average", "Sum", "SampleCount"})),
    # /aws/sagemaker/Endpoints, "Multi-Model Endpoint Model Instance Metrics" and "Endpoint Instance Metrics"
    "LoadedModelCount": ("/aws/sagemaker/Endpoints", _TIMES),
    "CPUUtilization": ("/aws/sagemaker/Endpoints", None),
    "MemoryUtilization": ("/aws/sagemaker/Endpoints", None),
    "DiskUtilization": ("/aws/sagemaker/Endpoints", None),
    "GPUUtilization": ("/aws/sagemaker/Endpoints", None),
    "GPUMemoryUtilization": ("/aws/sagemaker/Endpoints", None),
}
SAGEMAKER_NAMESPACES = {namespace for namespace, _ in SAGEMAKER_METRICS.values()}
ROLLBACK_ALARMS = ("EndpointServerErrorsAlarm", "EndpointModelErrorsAlarm")
THRASHING_ALARMS = ("ModelUnloadsAlarm", "ModelCacheHitAlarm")


@pytest.fixture(scope="module")
def template() -> Template:
    return Template.load(ROOT / "template.yaml")


def stack(**parameters: str) -> LocalResources:
    alarms = [logical for logical in Template.load(ROOT / "template.yaml").logical_ids("AWS::CloudWatch::Alarm")]
    return LocalResources(
        stack_name=STACK,
        account_id=ACCOUNT,
        parameters={"SourceDirS3Uri": "s3://deploy/code/sourcedir.tar.gz", **parameters},
        refs={"HttpApi": "a1b2c3d4e5", "RouterFunction": f"{STACK}-RouterFunction-XYZ"},
        attributes={
            "ModelSyncDeadLetterQueue.QueueName": f"{STACK}-ModelSyncDeadLetterQueue-XYZ",
            **{f"{alarm}.Arn": f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{alarm}" for alarm in alarms},
        },
    )


def dashboard(template: Template, resources: LocalResources) -> dict[str, Any]:
    body = template.resolve(template.resources["Dashboard"]["Properties"]["DashboardBody"], resources)
    return dict(json.loads(body))


def dashboard_metrics(body: dict[str, Any]) -> Iterator[tuple[str, str, str | None]]:
    """(namespace, metric, statistic) of every metric row, CloudWatch's "." and "..." shorthand expanded."""
    for widget in body["widgets"]:
        properties = widget["properties"]
        previous: list[str] = []
        for row in properties.get("metrics", []):
            options = row[-1] if isinstance(row[-1], dict) else {}
            values = row[:-1] if options else row
            if not values:  # a metric-math expression row
                continue
            values = (
                list(previous) if values == ["..."] else [previous[i] if v == "." else v for i, v in enumerate(values)]
            )
            previous = values
            yield values[0], values[1], options.get("stat", properties.get("stat"))


def alarm_metrics(template: Template) -> Iterator[tuple[str, str, str, str | None]]:
    """(alarm, namespace, metric, statistic) of every alarm, metric-math inputs included."""
    for logical_id in template.logical_ids("AWS::CloudWatch::Alarm"):
        props = template.resources[logical_id]["Properties"]
        if "MetricName" in props:
            yield logical_id, props["Namespace"], props["MetricName"], props.get("Statistic")
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                metric = query["MetricStat"]["Metric"]
                yield logical_id, metric["Namespace"], metric["MetricName"], query["MetricStat"]["Stat"]


def check_against_the_guide(namespace: str, metric: str, stat: str | None) -> None:
    if metric in SAGEMAKER_METRICS:
        expected, valid = SAGEMAKER_METRICS[metric]
        assert namespace == expected, f"{metric} is published in {expected}, not {namespace}"
        assert valid is None or stat is None or stat in valid, f"{metric}: {stat} is not one of {sorted(valid)}"
    elif namespace in SAGEMAKER_NAMESPACES:
        pytest.fail(f"{namespace} {metric}: not a metric the developer guide lists")


# --- item 7: namespaces ---------------------------------------------------------------------------


def test_every_dashboard_metric_is_in_the_namespace_the_guide_names(template: Template) -> None:
    # Given the dashboard as CloudFormation renders it
    rows = list(dashboard_metrics(dashboard(template, stack())))
    # Then every SageMaker metric sits in its documented namespace, with a documented statistic
    for namespace, metric, stat in rows:
        check_against_the_guide(namespace, metric, stat)
    # And the multi-model endpoint's own metrics are all there
    shown = {(namespace, metric) for namespace, metric, _ in rows}
    assert ("/aws/sagemaker/Endpoints", "LoadedModelCount") in shown
    assert {("AWS/SageMaker", m) for m in ("ModelCacheHit", "ModelUnloadingTime", "ModelLoadingWaitTime")} <= shown
    assert ("AWS/SageMaker", "InvocationModelErrors") in shown


def test_every_alarm_metric_is_in_the_namespace_the_guide_names(template: Template) -> None:
    found = list(alarm_metrics(template))
    assert {alarm for alarm, *_ in found} >= {*ROLLBACK_ALARMS, *THRASHING_ALARMS, "ModelLoadingWaitAlarm"}
    for _, namespace, metric, stat in found:
        check_against_the_guide(namespace, metric, stat)


def test_the_namespace_check_catches_the_old_loaded_models_line() -> None:
    # The dashboard used to ask AWS/SageMaker for LoadedModelCount: an empty line. The check must refuse it.
    with pytest.raises(AssertionError, match="published in /aws/sagemaker/Endpoints"):
        check_against_the_guide("AWS/SageMaker", "LoadedModelCount", "Maximum")


# --- item 11: thrashing instead of memory -----------------------------------------------------------


def test_no_alarm_watches_memory_a_multi_model_endpoint_fills_it_by_design(template: Template) -> None:
    assert all(metric != "MemoryUtilization" for _, _, metric, _ in alarm_metrics(template))


def test_thrashing_alarms_count_unloads_and_low_cache_hits(template: Template) -> None:
    unloads = template.resources["ModelUnloadsAlarm"]["Properties"]
    # The guide: "use the SampleCount statistic for the ModelUnloadingTime metric to monitor the number of unload
    # requests"; sustained unloads are thrashing
    assert (unloads["MetricName"], unloads["Statistic"]) == ("ModelUnloadingTime", "SampleCount")
    assert unloads["ComparisonOperator"] == "GreaterThanThreshold"
    assert unloads["DatapointsToAlarm"] == unloads["EvaluationPeriods"] > 1
    hits = template.resources["ModelCacheHitAlarm"]["Properties"]
    by_id = {query["Id"]: query for query in hits["Metrics"]}
    # The Average of ModelCacheHit is the ratio of requests whose model was loaded; SampleCount counts requests
    assert by_id["hits"]["MetricStat"]["Stat"] == "Average"
    assert by_id["requests"]["MetricStat"]["Stat"] == "SampleCount"
    assert [q["Id"] for q in hits["Metrics"] if q["ReturnData"]] == ["ratio"]
    assert "requests >=" in by_id["ratio"]["Expression"]  # quiet periods are no evidence of thrashing
    assert hits["ComparisonOperator"] == "LessThanThreshold"
    assert 0 < hits["Threshold"] < 1


def test_thrashing_alarms_exist_only_with_the_model_cache_on(template: Template) -> None:
    # Given the cache disabled (SageMaker then unloads every model after its invocation by design)
    for logical_id in THRASHING_ALARMS:
        assert template.resources[logical_id]["Condition"] == "ModelCacheEnabled"
    for setting, expected in (("Enabled", True), ("Disabled", False)):
        resources = stack(ModelCacheSetting=setting)
        assert template.condition("ModelCacheEnabled", resources) is expected
        # Then the dashboard's alarm widget lists them exactly when they exist, and stays valid JSON
        alarms = next(w for w in dashboard(template, resources)["widgets"] if w["type"] == "alarm")
        listed = {arn.rsplit(":", 1)[1] for arn in alarms["properties"]["alarms"]}
        assert (set(THRASHING_ALARMS) <= listed) is expected
        assert {*ROLLBACK_ALARMS, "ModelLoadingWaitAlarm"} <= listed


def test_model_errors_alarm_watches_invocation_model_errors(template: Template) -> None:
    alarm = template.resolve(template.resources["EndpointModelErrorsAlarm"]["Properties"], stack())
    assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == (
        "AWS/SageMaker",
        "InvocationModelErrors",
        "Sum",
    )
    assert alarm["AlarmName"] == f"{STACK}-endpoint-model-errors"
    assert {d["Name"]: d["Value"] for d in alarm["Dimensions"]} == {
        "EndpointName": "house-prices-mme",
        "VariantName": "AllTraffic",
    }


# --- item 10: blue/green with rollback ------------------------------------------------------------


def test_endpoint_updates_are_blue_green_and_roll_back_on_the_error_alarms(template: Template) -> None:
    config = template.resources["Endpoint"]["Properties"]["DeploymentConfig"]
    policy = config["BlueGreenUpdatePolicy"]
    routing = policy["TrafficRoutingConfiguration"]
    # Given all traffic shifted at once, then a baking period
    assert routing["Type"] == "ALL_AT_ONCE"
    bake = routing["WaitIntervalInSeconds"]
    assert 0 < bake <= 3600
    assert 0 <= policy["TerminationWaitInSeconds"] <= 3600
    assert bake + policy["TerminationWaitInSeconds"] < policy["MaximumExecutionTimeoutInSeconds"] <= 28800
    # Then the rollback watches the endpoint's error alarms, and nothing a cold new fleet trips by itself
    rollback = [alarm["AlarmName"] for alarm in config["AutoRollbackConfiguration"]["Alarms"]]
    assert rollback == [{"Ref": logical_id} for logical_id in ROLLBACK_ALARMS]
    endpoint_name = template.resources["Endpoint"]["Properties"]["EndpointName"]
    for logical_id in ROLLBACK_ALARMS:
        alarm = template.resources[logical_id]["Properties"]
        dimensions = {d["Name"]: d["Value"] for d in alarm["Dimensions"]}
        # the same endpoint, named without !GetAtt Endpoint (which would be a dependency cycle)
        assert dimensions == {"EndpointName": endpoint_name, "VariantName": "AllTraffic"}
        assert alarm["Namespace"] == "AWS/SageMaker"
        # and fast enough to trip while the green fleet bakes
        assert alarm["Period"] * alarm.get("DatapointsToAlarm", alarm["EvaluationPeriods"]) < bake


def test_the_execution_role_may_read_the_rollback_alarms(template: Template) -> None:
    # "Ensure that your IAM execution role has permission to perform the cloudwatch:DescribeAlarms action on the
    # auto-rollback alarms you specify" (deployment-guardrails-configuration.md)
    resources = stack()
    policies = template.resolve(template.resources["SageMakerExecutionRole"]["Properties"]["Policies"], resources)
    statements = [s for p in policies for s in p["PolicyDocument"]["Statement"]]
    for logical_id in ROLLBACK_ALARMS:
        name = template.resolve(template.resources[logical_id]["Properties"]["AlarmName"], resources)
        arn = f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:{name}"
        assert is_allowed(statements, Permission("cloudwatch:DescribeAlarms", arn))
    assert not is_allowed(
        statements, Permission("cloudwatch:DescribeAlarms", f"arn:aws:cloudwatch:us-east-1:{ACCOUNT}:alarm:other")
    )


# --- item 9: the instance floor -------------------------------------------------------------------


def samconfig_overrides(env: str) -> dict[str, str]:
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    return parse_overrides(as_list(config[env]["deploy"]["parameters"]["parameter_overrides"]))


def test_the_instance_floor_is_two_for_production_and_one_for_dev(template: Template) -> None:
    parameters = template.document["Parameters"]
    # Given AWS's advice of several instances per production endpoint (Availability Zones)
    assert parameters["MinInstanceCount"]["Default"] == 2
    assert samconfig_overrides("prod")["MinInstanceCount"] == "2"
    assert samconfig_overrides("default")["MinInstanceCount"] == "1"
    for env in ("default", "prod"):
        overrides = samconfig_overrides(env)
        assert int(overrides["MinInstanceCount"]) <= int(overrides["MaxInstanceCount"])
    assert int(parameters["MinInstanceCount"]["Default"]) <= int(parameters["MaxInstanceCount"]["Default"])
    # Then the floor is what the endpoint starts with and what auto scaling never goes below
    variant = template.resources["EndpointConfig"]["Properties"]["ProductionVariants"][0]
    assert variant["InitialInstanceCount"] == {"Ref": "MinInstanceCount"}
    assert template.resources["EndpointScalableTarget"]["Properties"]["MinCapacity"] == {"Ref": "MinInstanceCount"}


def test_the_docs_price_the_floor() -> None:
    # ml.m5.large lists at $0.115 per hour in us-east-1; 730 hours a month
    docs = (ROOT / "docs" / "deploy.md").read_text()
    for instances in (1, 2):
        assert f"${0.115 * 730 * instances:,.2f}" in docs


# --- item 4: the account-wide training log group --------------------------------------------------


def test_the_training_log_group_is_declared_only_on_request_and_outlives_the_stack(template: Template) -> None:
    parameter = template.document["Parameters"]["ManageTrainingJobsLogGroup"]
    group = template.resources["TrainingJobsLogGroup"]
    # Given the default: false never fails, whether the group exists (any account that ran training) or not
    assert parameter["Default"] == "false"
    assert template.condition("CreateTrainingJobsLogGroup", stack()) is False
    assert template.condition("CreateTrainingJobsLogGroup", stack(ManageTrainingJobsLogGroup="true")) is True
    # Then, when declared, it is kept when the stack goes or replaces it
    assert group["Condition"] == "CreateTrainingJobsLogGroup"
    assert group["DeletionPolicy"] == group["UpdateReplacePolicy"] == "Retain"
    assert group["Properties"]["LogGroupName"] == "/aws/sagemaker/TrainingJobs"
    # And nothing else in the template depends on the optional resource
    others = {k: v for k, v in template.resources.items() if k != "TrainingJobsLogGroup"}
    assert "TrainingJobsLogGroup" not in json.dumps(others)
