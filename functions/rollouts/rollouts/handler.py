"""Lambda entry point: a scheduled event (EventBridge, every minute) -> decide every running rollout.

The decision time is the event's ``time``: on AWS the minute the schedule fired, locally the simulated
clock ``python -m local.scheduler tick --time ...`` sends. Aggregate metrics only: a city or a version as
a dimension would make thousands of custom metrics.
"""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from house_prices.errors import DependencyFailure
from house_prices.observability import MetricUnit, logger, metrics, tracer
from rollouts import wiring
from rollouts.logic import Outcome, Report, RolloutDecider, scheduled_time
from rollouts.settings import RolloutSettings

IN_PROGRESS_METRIC = "RolloutsInProgress"
METRIC_NAMES = {
    Outcome.PROMOTED: "RolloutsPromoted",
    Outcome.ROLLED_BACK: "RolloutsRolledBack",
    Outcome.TIMED_OUT: "RolloutsTimedOut",
    Outcome.FAILED: "RolloutEvaluationsFailed",
}


@functools.cache
def decider() -> RolloutDecider:
    """Built once per execution environment; a bad setting fails here with the variable's name."""
    return wiring.build_decider(RolloutSettings.from_env())


@logger.inject_lambda_context(correlation_id_path=correlation_paths.EVENT_BRIDGE)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    report = decider().evaluate(scheduled_time(event))
    _publish(report)
    logger.info("Rollouts evaluated", extra=report.as_dict())
    if report.count(Outcome.FAILED):
        # Counted as the invocation's error (Lambda's Errors metric); the next tick decides these again.
        raise DependencyFailure(f"{report.count(Outcome.FAILED)} rollout(s) could not be decided; see the log")
    return report.as_dict()


def _publish(report: Report) -> None:
    metrics.add_metric(name=IN_PROGRESS_METRIC, unit=MetricUnit.Count, value=report.in_progress)
    for outcome, name in METRIC_NAMES.items():
        metrics.add_metric(name=name, unit=MetricUnit.Count, value=report.count(outcome))
