"""local.log_delivery's readings of CloudWatch Logs filter patterns, Firehose's JQ keys and prefix expressions,
and of the template: what it emulates it does as AWS does, what it does not emulate it refuses at start."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from local.log_delivery import FilterPattern, JqQuery, PartitionKeyError, plan, render_prefix
from local.template import LocalResources, Template, TemplateError


@pytest.mark.parametrize(
    ("pattern", "message", "sent"),
    [
        ('{ $.capture = "predictions" }', '{"capture": "predictions", "x": 1}', True),
        ('{ $.capture = "predictions" }', '{"capture": "prediction"}', False),
        ('{ $.capture = "predictions" }', '{"level": "INFO"}', False),
        ('{ $.capture = "predictions" }', "capture predictions", False),  # not JSON: a JSON pattern never matches
        ('{ $.capture = "predictions" }', '["capture", "predictions"]', False),
        ('{ $.a.b = "x" && $.c != "y" }', '{"a": {"b": "x"}, "c": "z"}', True),
        ('{ $.a.b = "x" && $.c != "y" }', '{"a": {"b": "x"}, "c": "y"}', False),
        ("{ $.n = 3 }", '{"n": 3}', True),
        ('{ $.capture = "predictions" }', '{"capture": {"nested": "predictions"}}', False),
    ],
)
def test_json_filter_patterns_match_as_cloudwatch_logs_does(pattern: str, message: str, sent: bool) -> None:
    assert FilterPattern.parse(pattern).matches(message) is sent


@pytest.mark.parametrize("pattern", ["ERROR", '{ $.a = "x" || $.b = "y" }', '{ $.a = "x*" }', "[ip, user, ...]", ""])
def test_patterns_it_does_not_emulate_are_refused(pattern: str) -> None:
    with pytest.raises(ValueError, match="pattern"):
        FilterPattern.parse(pattern)


def test_jq_keys_are_fields_and_string_slices() -> None:
    query = JqQuery.parse("{city: .city, date: .time[0:10], deep: .a.b}")
    assert query.evaluate('{"city": "Chicago_IL", "time": "2026-12-07T02:43:25.571Z", "a": {"b": 7}}') == {
        "city": "Chicago_IL",
        "date": "2026-12-07",
        "deep": "7",
    }


@pytest.mark.parametrize(
    "message", ["not json", '{"time": "2026-12-07T00:00:00Z"}', '{"city": "", "time": "x"}', '{"city": "A", "time": 5}']
)
def test_records_without_keys_are_partition_errors(message: str) -> None:
    with pytest.raises(PartitionKeyError):
        JqQuery.parse("{city: .city, date: .time[0:10]}").evaluate(message)


@pytest.mark.parametrize("query", [".city", "{city: .city | ascii_downcase}", "{city: .cities[0]}"])
def test_jq_it_does_not_emulate_is_refused(query: str) -> None:
    with pytest.raises(ValueError, match=r"JQ|object queries"):
        JqQuery.parse(query)


def test_prefix_expressions_fill_keys_timestamps_and_error_types() -> None:
    now = datetime(2026, 12, 7, 2, 43, 25, tzinfo=UTC)
    assert render_prefix("p/city=!{partitionKeyFromQuery:city}/", keys={"city": "Chicago_IL"}) == "p/city=Chicago_IL/"
    assert render_prefix("e/!{firehose:error-output-type}/!{timestamp:yyyy-MM-dd/HH}/", now, error_type="x") == (
        "e/x/2026-12-07/02/"
    )
    with pytest.raises(TemplateError, match="cannot fill"):
        render_prefix("p/!{partitionKeyFromQuery:zip}/", keys={"city": "Chicago_IL"})


def with_stream(change: Any) -> Template:
    document = copy.deepcopy(dict(Template.load().document))
    change(document["Resources"]["CaptureDeliveryStream"]["Properties"]["ExtendedS3DestinationConfiguration"])
    return Template(document)


def test_the_template_plans_one_delivery_for_the_router_and_none_for_model_sync() -> None:
    template = Template.load()
    (spec,) = plan(template, LocalResources(), "RouterFunction")
    assert (spec.filter_id, spec.buffer_seconds, spec.compression) == ("CaptureSubscriptionFilter", 300.0, "GZIP")
    assert plan(template, LocalResources(), "ModelSyncFunction") == []


def test_a_processor_it_does_not_emulate_stops_the_start() -> None:
    def add_lambda(config: dict[str, Any]) -> None:
        config["ProcessingConfiguration"]["Processors"].append({"Type": "Lambda", "Parameters": []})

    with pytest.raises(TemplateError, match="'Lambda' is not emulated"):
        plan(with_stream(add_lambda), LocalResources(), "RouterFunction")


def test_dynamic_partitioning_without_a_query_stops_the_start() -> None:
    def drop_query(config: dict[str, Any]) -> None:
        processors = config["ProcessingConfiguration"]["Processors"]
        config["ProcessingConfiguration"]["Processors"] = [p for p in processors if p["Type"] != "MetadataExtraction"]

    with pytest.raises(TemplateError, match="MetadataExtraction"):
        plan(with_stream(drop_query), LocalResources(), "RouterFunction")
