"""local/scheduler.py without processes: rate expressions, the scheduled event's shape, the template's schedules."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from local.lambda_runtime import LambdaContext
from local.scheduler import Scheduler, rate_seconds, rule_arn, scheduled_event
from local.stack import StackConfig, plan_stack
from local.template import FunctionSpec, ScheduleTrigger, Template, TemplateError
from rollouts.logic import scheduled_time


@pytest.mark.parametrize(
    ("expression", "seconds"),
    [("rate(1 minute)", 60), ("rate(5 minutes)", 300), ("rate(1 hour)", 3600), ("rate(2 days)", 172800)],
)
def test_rate_expressions_give_their_period(expression: str, seconds: int) -> None:
    assert rate_seconds(expression) == seconds


@pytest.mark.parametrize("expression", ["rate(1 minutes)", "rate(2 minute)", "rate(0 minutes)", "cron(0 12 * * ? *)"])
def test_other_expressions_are_refused_with_the_expression(expression: str) -> None:
    with pytest.raises(TemplateError, match=re.escape(expression)):
        rate_seconds(expression)


def test_the_template_schedules_the_rollout_decider_every_minute() -> None:
    function = Template.load().function("RolloutFunction")
    assert function.schedule_triggers == (ScheduleTrigger("EveryMinute", "rate(1 minute)", True),)
    # And the local stack plans one scheduler for it (and for nothing else)
    plan = plan_stack(Template.load(), StackConfig())
    assert [f.logical_id for f in plan.scheduled_functions] == ["RolloutFunction"]


def test_the_event_is_what_an_eventbridge_rule_sends_and_the_decider_reads_its_time() -> None:
    # Given the shape of the Lambda developer guide's scheduled event
    at = datetime(2026, 12, 15, 5, 0, 0, 123456, tzinfo=UTC)
    event = scheduled_event(at, "arn:aws:events:us-east-1:123456789012:rule/s-F-E", "us-east-1", "123456789012")
    assert set(event) == {"version", "id", "detail-type", "source", "account", "time", "region", "resources", "detail"}
    assert (event["detail-type"], event["source"], event["detail"]) == ("Scheduled Event", "aws.events", {})
    assert event["time"] == "2026-12-15T05:00:00Z"
    assert event["resources"] == ["arn:aws:events:us-east-1:123456789012:rule/s-F-E"]
    # Then the decider's decision time is that second
    assert scheduled_time(event) == at.replace(microsecond=0)


def context_of(function: FunctionSpec) -> Callable[[], LambdaContext]:
    return lambda: LambdaContext.for_function(function, "us-east-1", "1")


def test_a_tick_sends_the_chosen_time_to_the_handler_one_at_a_time() -> None:
    function = Template.load().function("RolloutFunction")
    seen: list[dict[str, Any]] = []

    def handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
        seen.append(event)
        return {"ok": True, "function": context.function_name}

    scheduler = Scheduler(function, handler, context_of(function), "us-east-1", "1", "stack")
    event, result = scheduler.tick(at=datetime(2030, 1, 1, tzinfo=UTC))
    assert result == {"ok": True, "function": function.function_name}
    assert seen == [event]
    assert event["time"] == "2030-01-01T00:00:00Z"
    assert event["resources"] == [rule_arn(function, function.schedule_triggers[0], "us-east-1", "1", "stack")]
    with pytest.raises(KeyError, match="no schedule 'Nightly'"):
        scheduler.tick("Nightly")


def test_a_function_without_schedules_has_no_scheduler() -> None:
    router = Template.load().function("RouterFunction")
    with pytest.raises(TemplateError, match="no enabled Schedule event"):
        Scheduler(router, lambda event, context: None, context_of(router), "us-east-1", "1", "stack")
