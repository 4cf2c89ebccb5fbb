"""Lambda entry point: S3 ObjectCreated events on training outputs -> model_sync.logic."""

from __future__ import annotations

import functools
from typing import Any

from aws_lambda_powertools.utilities.data_classes import S3Event, event_source
from aws_lambda_powertools.utilities.typing import LambdaContext

from house_prices.observability import logger, metrics, tracer
from model_sync import wiring
from model_sync.logic import ModelSync, summarize
from model_sync.settings import SyncSettings

# S3's request id of the upload that produced the event (Powertools has no ready path for S3 events).
S3_REQUEST_ID = 'Records[0].responseElements."x-amz-request-id"'


@functools.cache
def service() -> ModelSync:
    """Built once per execution environment; a bad setting fails here with the variable's name."""
    return wiring.build_service(SyncSettings.from_env())


@logger.inject_lambda_context(correlation_id_path=S3_REQUEST_ID)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
@event_source(data_class=S3Event)
def lambda_handler(event: S3Event, context: LambdaContext) -> dict[str, Any]:
    return summarize(service().sync_event_records(event.records))
