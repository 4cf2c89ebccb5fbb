"""template.yaml's prediction capture: the router's log group → subscription filter (capture lines only) →
Firehose (decompress, extract messages, partition by city and date) → S3 at naming.KeyLayout's capture
keys; each role allowed exactly its part, and the deployer allowed to create it."""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from typing import Any

import pytest

from house_prices import captures, ids
from house_prices.naming import KeyLayout
from house_prices.observability import logger
from local.log_delivery import FilterPattern, JqQuery, plan, render_prefix
from local.template import LocalResources, Template
from router.settings import RouterSettings
from tests.iam import Permission, grants, is_allowed
from tests.router_doubles import LIVE, SequentialIds
from tests.unit.test_template_deployer_policy import statements as deployer_statements

REGION, ACCOUNT, STACK = "us-east-1", "123456789012", "house-prices-mme"
# CloudFormation names the stream {stack}-{logical id}-{suffix}.
STREAM_ARN = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/{STACK}-CaptureDeliveryStream-1A2B3C4D5E6F"
RESOURCES = LocalResources(
    stack_name=STACK,
    region=REGION,
    account_id=ACCOUNT,
    parameters={"SourceDirS3Uri": "s3://deploy/code/sourcedir.tar.gz"},
    attributes={"CaptureDeliveryStream.Arn": STREAM_ARN},
)
TEMPLATE = Template.load()
BUCKET = f"house-prices-mme-{ACCOUNT}-{REGION}"
LAYOUT = KeyLayout(TEMPLATE.parameter("ArtifactPrefix", RESOURCES))


def props(logical_id: str) -> Mapping[str, Any]:
    return TEMPLATE.resources[logical_id]["Properties"]


def destination() -> Mapping[str, Any]:
    return props("CaptureDeliveryStream")["ExtendedS3DestinationConfiguration"]


def role_statements(logical_id: str) -> list[Mapping[str, Any]]:
    found: list[Mapping[str, Any]] = []
    for policy in props(logical_id).get("Policies") or []:
        resolved = TEMPLATE.resolve(policy["PolicyDocument"], RESOURCES, where=logical_id)
        found += resolved["Statement"] if isinstance(resolved["Statement"], list) else [resolved["Statement"]]
    return found


def trust(logical_id: str) -> Mapping[str, Any]:
    (statement,) = TEMPLATE.resolve(props(logical_id)["AssumeRolePolicyDocument"], RESOURCES)["Statement"]
    return dict(statement)


def a_capture_line(city: str = "Chicago_IL") -> str:
    (line,) = captures.capture_lines(
        city=city,
        version=LIVE,
        request_id="req",
        prediction_ids=SequentialIds.expected(city, 2),
        rows=[(2005, 3100, 4, 2.5, 1.1, 2)] * 2,
        prices=[1.0, 2.0],
        house_ids=[None, "h"],
    )
    return line


# --- the subscription filter -------------------------------------------------------------------


def test_the_filter_subscribes_the_routers_own_log_group_to_the_stream() -> None:
    subscription = props("CaptureSubscriptionFilter")
    router_logging = props("RouterFunction")["LoggingConfig"]
    assert subscription["LogGroupName"] == router_logging["LogGroup"] == {"Ref": "RouterLogGroup"}
    assert subscription["DestinationArn"] == {"Fn::GetAtt": ["CaptureDeliveryStream", "Arn"]}
    assert subscription["RoleArn"] == {"Fn::GetAtt": ["CaptureSubscriptionRole", "Arn"]}
    # The router writes to stdout, which Lambda passes on as it is (JSON format concerns its logging lines)
    assert router_logging["LogFormat"] == "JSON"


def test_the_pattern_is_the_capture_marker() -> None:
    assert props("CaptureSubscriptionFilter")["FilterPattern"] == captures.FILTER_PATTERN


def test_the_pattern_matches_capture_lines_and_nothing_else_the_router_writes(monkeypatch: pytest.MonkeyPatch) -> None:
    # Given what the router writes to its log stream: a capture line, Powertools' log lines, EMF
    pattern = FilterPattern.parse(props("CaptureSubscriptionFilter")["FilterPattern"])
    stream = io.StringIO()
    monkeypatch.setattr(logger.registered_handler, "stream", stream)
    logger.info("Predicted", extra={"city": "Chicago_IL", "houses": 1, "captured": 1})
    logger.warning("Could not record the predictions")
    powertools = stream.getvalue().splitlines()
    emf = '{"_aws":{"Timestamp":1,"CloudWatchMetrics":[]},"HousesPerRequest":[1.0],"city":"Chicago_IL"}'
    # Then only the capture line is sent to Firehose
    assert pattern.matches(a_capture_line())
    assert powertools
    assert not any(pattern.matches(line) for line in powertools)
    assert not pattern.matches(emf)
    assert not pattern.matches("START RequestId: 8f50 Version: $LATEST")


# --- the delivery stream -----------------------------------------------------------------------


def test_processors_unpack_cloudwatch_logs_then_partition_by_city_and_date_one_line_per_record() -> None:
    processing = destination()["ProcessingConfiguration"]
    assert processing["Enabled"] is True
    steps = [
        (p["Type"], {q["ParameterName"]: q["ParameterValue"] for q in p.get("Parameters", [])})
        for p in processing["Processors"]
    ]
    assert steps == [
        ("Decompression", {"CompressionFormat": "GZIP"}),
        ("CloudWatchLogProcessing", {"DataMessageExtraction": "true"}),
        (
            "MetadataExtraction",
            {"MetadataExtractionQuery": "{city: .city, date: .time[0:10]}", "JsonParsingEngine": "JQ-1.6"},
        ),
        ("AppendDelimiterToRecord", {}),
    ]
    assert destination()["DynamicPartitioningConfiguration"]["Enabled"] is True


def test_the_keys_jq_computes_are_the_prediction_ids_city_and_utc_day() -> None:
    # Given a capture line and its first prediction id (what a label would carry back)
    line = a_capture_line("Winston-Salem_NC")
    stamp, city = ids.parse_prediction_id(json.loads(line)["predictions"][0]["prediction_id"])
    # When Firehose's query runs on the line
    query = JqQuery.parse(destination()["ProcessingConfiguration"]["Processors"][2]["Parameters"][0]["ParameterValue"])
    # Then the partition keys are that city and that day
    assert query.evaluate(line) == {"city": city, "date": stamp.date().isoformat()}


def test_the_prefix_is_key_layouts_capture_prefix() -> None:
    # Given the template's prefix expression, resolved for the stack
    (spec,) = plan(TEMPLATE, RESOURCES, "RouterFunction")
    # When Firehose fills in the partition keys, Then the key is exactly KeyLayout's
    filled = render_prefix(spec.prefix, keys={"city": "Chicago_IL", "date": "2026-12-07"})
    assert filled == LAYOUT.capture_prefix("Chicago_IL", "2026-12-07")
    assert spec.bucket == BUCKET
    assert spec.error_prefix.startswith(LAYOUT.capture_errors_prefix + "!{firehose:error-output-type}/")


def test_objects_are_gzipped_json_lines_buffered_within_firehoses_limits() -> None:
    config = destination()
    assert (config["CompressionFormat"], config["FileExtension"]) == ("GZIP", ".jsonl.gz")
    hints = config["BufferingHints"]
    # Dynamic partitioning needs 64-128 MiB; the interval is 60-900 s (no zero buffering with partitioning)
    assert 64 <= hints["SizeInMBs"] <= 128
    assert 60 <= hints["IntervalInSeconds"] <= 900
    assert config["ErrorOutputPrefix"]  # required with dynamic partitioning


def test_the_stream_is_named_by_cloudformation() -> None:
    # A fixed name would cap the stack name at 55 characters (Firehose takes 64) and block replacements;
    # the generated one starts with the stack name, which the deployer's grant is scoped to.
    assert "DeliveryStreamName" not in props("CaptureDeliveryStream")


# --- IAM: each role its part only ----------------------------------------------------------------


def test_firehose_may_write_only_the_capture_prefixes() -> None:
    grants = role_statements("CaptureDeliveryRole")
    bucket_arn = f"arn:aws:s3:::{BUCKET}"
    allowed = [
        Permission("s3:PutObject", f"{bucket_arn}/{LAYOUT.capture_prefix('Chicago_IL', '2026-12-07')}x.jsonl.gz"),
        Permission("s3:PutObject", f"{bucket_arn}/{LAYOUT.capture_errors_prefix}processing-failed/2026-12-07/x"),
        Permission("s3:AbortMultipartUpload", f"{bucket_arn}/{LAYOUT.captures_prefix}city=A/date=2026-12-07/x"),
        Permission("s3:ListBucket", bucket_arn),
        Permission("s3:GetBucketLocation", bucket_arn),
    ]
    refused = [
        Permission("s3:PutObject", f"{bucket_arn}/{LAYOUT.mme_key('Chicago_IL', LIVE)}"),
        Permission("s3:PutObject", f"{bucket_arn}/{LAYOUT.training_output_prefix}Chicago_IL/job/output/model.tar.gz"),
        Permission("s3:PutObject", f"{bucket_arn}/{LAYOUT.prefix}/labels/x.csv"),
        Permission("s3:DeleteObject", f"{bucket_arn}/{LAYOUT.captures_prefix}x"),
        Permission("s3:PutObject", "arn:aws:s3:::another-bucket/DEMO_MME_SCIKIT_V1/captures/x"),
    ]
    assert all(is_allowed(grants, p) for p in allowed), [str(p) for p in allowed if not is_allowed(grants, p)]
    assert not any(is_allowed(grants, p) for p in refused), [str(p) for p in refused if is_allowed(grants, p)]


def test_only_firehose_for_this_account_may_assume_the_delivery_role() -> None:
    statement = trust("CaptureDeliveryRole")
    assert statement["Principal"] == {"Service": "firehose.amazonaws.com"}
    assert statement["Condition"] == {"StringEquals": {"sts:ExternalId": ACCOUNT}}


def test_cloudwatch_logs_may_only_put_records_into_this_stream() -> None:
    statement = trust("CaptureSubscriptionRole")
    assert statement["Principal"] == {"Service": "logs.amazonaws.com"}
    assert statement["Condition"] == {"StringLike": {"aws:SourceArn": f"arn:aws:logs:{REGION}:{ACCOUNT}:*"}}
    grants = role_statements("CaptureSubscriptionRole")
    assert is_allowed(grants, Permission("firehose:PutRecordBatch", STREAM_ARN))
    assert is_allowed(grants, Permission("firehose:PutRecord", STREAM_ARN))
    other = f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/payroll"
    assert not is_allowed(grants, Permission("firehose:PutRecordBatch", other))
    assert not is_allowed(grants, Permission("firehose:DeleteDeliveryStream", STREAM_ARN))


def test_the_router_itself_gains_no_right_capture_is_a_log_line() -> None:
    actions = {
        action
        for statement in grants("RouterFunction").statements
        for action in (statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]])
    }
    assert not {a for a in actions if a.split(":")[0] in {"firehose", "s3", "kinesis"}}


def test_the_deployer_may_create_the_capture_path_and_nothing_wider() -> None:
    router_group = f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/{STACK}-RouterFunction:*"
    granted = [
        Permission("firehose:CreateDeliveryStream", STREAM_ARN),
        Permission("firehose:UpdateDestination", STREAM_ARN),
        Permission("firehose:DeleteDeliveryStream", STREAM_ARN),
        Permission("logs:PutSubscriptionFilter", router_group),
        Permission("logs:DeleteSubscriptionFilter", router_group),
        Permission(
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/{STACK}-CaptureDeliveryRole-A1",
            {"iam:PassedToService": "firehose.amazonaws.com"},
        ),
        Permission(
            "iam:PassRole",
            f"arn:aws:iam::{ACCOUNT}:role/{STACK}-CaptureSubscriptionRole-A1",
            {"iam:PassedToService": "logs.amazonaws.com"},
        ),
    ]
    refused = [
        Permission("firehose:DeleteDeliveryStream", f"arn:aws:firehose:{REGION}:{ACCOUNT}:deliverystream/payroll"),
        Permission("logs:PutSubscriptionFilter", f"arn:aws:logs:{REGION}:{ACCOUNT}:log-group:/aws/lambda/payroll:*"),
    ]
    policy = deployer_statements()
    assert all(is_allowed(policy, p) for p in granted), [str(p) for p in granted if not is_allowed(policy, p)]
    assert not any(is_allowed(policy, p) for p in refused)


def test_the_templates_sample_rate_is_a_valid_router_setting() -> None:
    environment = TEMPLATE.function("RouterFunction", RESOURCES).environment
    settings = RouterSettings.from_env({**environment, "ENDPOINT_NAME": "e", "REGISTRY_TABLE": "t"})
    assert settings.capture_sample_rate == 1.0


def test_the_outputs_name_where_captures_land() -> None:
    outputs = TEMPLATE.document["Outputs"]
    assert TEMPLATE.resolve(outputs["CapturePrefix"]["Value"], RESOURCES) == f"s3://{BUCKET}/{LAYOUT.captures_prefix}"
    assert outputs["CaptureDeliveryStreamName"]["Value"] == {"Ref": "CaptureDeliveryStream"}
