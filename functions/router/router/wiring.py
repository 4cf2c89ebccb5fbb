"""Composition root: settings -> boto3 clients -> adapters -> RouterService (once per container).

The only module of the router that builds AWS clients or reads settings; adapters receive both.
Clients come from botocore directly: boto3 adds nothing the router uses, and importing it (with
s3transfer) was ~40 ms of the cold start. botocore reads the same configuration as boto3
(credentials, region, ``AWS_ENDPOINT_URL_*``).
"""

from __future__ import annotations

from functools import cache
from typing import Any

import botocore.session
from botocore.config import Config

from house_prices.observability import traced
from house_prices.registry import ModelRegistry
from router.adapters.endpoint import SageMakerEndpoint
from router.adapters.feedback_queue import SqsLabelQueue
from router.adapters.quality import DynamoQualityReader
from router.adapters.registry import CachedRegistry
from router.capture import PredictionCapture
from router.feedback import FeedbackService
from router.logic import RouterService
from router.settings import RouterSettings

# InvokeEndpoint attempts for a rollout's candidate (build_candidate_endpoint).
CANDIDATE_ATTEMPTS = 1


@cache
def _session() -> botocore.session.Session:
    return botocore.session.get_session()


def bounded_client(service: str, connect_seconds: int, read_seconds: int, total_attempts: int) -> Any:
    """A traced boto3 client whose worst case is known: the router's time budget adds these up."""
    config = Config(
        connect_timeout=connect_seconds,
        read_timeout=read_seconds,
        # botocore's "max_attempts" counts retries only; the setting is the total, first try included.
        retries={"total_max_attempts": total_attempts, "mode": "standard"},
    )
    return traced(_session().create_client(service, config=config))


def runtime_client(settings: RouterSettings, total_attempts: int | None = None) -> Any:
    """SageMaker Runtime on the endpoint's budget; ``total_attempts`` replaces its attempts (a rollout's candidate)."""
    return bounded_client(
        "sagemaker-runtime",
        settings.endpoint_connect_timeout_seconds,
        settings.endpoint_read_timeout_seconds,
        settings.endpoint_max_attempts if total_attempts is None else total_attempts,
    )


def registry_client(settings: RouterSettings) -> Any:
    """DynamoDB with timeouts that fit the function's budget; botocore's defaults (60 s) would not."""
    return client_on_registry_budget("dynamodb", settings)


def client_on_registry_budget(service: str, settings: RouterSettings) -> Any:
    """A client for small, quick calls (DynamoDB, SQS) on the registry's timeouts and attempts."""
    return bounded_client(
        service,
        settings.registry_connect_timeout_seconds,
        settings.registry_read_timeout_seconds,
        settings.registry_max_attempts,
    )


def build_endpoint(settings: RouterSettings) -> SageMakerEndpoint:
    return SageMakerEndpoint(runtime_client(settings), settings.endpoint_name, settings.endpoint_read_timeout_seconds)


def build_candidate_endpoint(settings: RouterSettings) -> SageMakerEndpoint:
    """The endpoint as a rollout's candidate sees it: one attempt, because a failed candidate call is
    answered by the live version (its retry), and the function's timeout must hold the registry lookup,
    one candidate attempt and the live call's attempts (tests/unit/test_router_budget.py)."""
    client = runtime_client(settings, CANDIDATE_ATTEMPTS)
    return SageMakerEndpoint(client, settings.endpoint_name, settings.endpoint_read_timeout_seconds)


def build_registry(settings: RouterSettings) -> CachedRegistry:
    registry = ModelRegistry(registry_client(settings), settings.registry_table)
    return CachedRegistry(registry, settings.live_model_cache_seconds)


def build_service(settings: RouterSettings) -> RouterService:
    return RouterService(
        build_registry(settings),
        build_endpoint(settings),
        settings.max_houses_per_request,
        capture=PredictionCapture(settings.capture_sample_rate),
        candidate_endpoint=build_candidate_endpoint(settings),
        quality=(
            DynamoQualityReader(registry_client(settings), settings.quality_table) if settings.quality_table else None
        ),
    )


def build_feedback(settings: RouterSettings) -> FeedbackService:
    """SQS with the registry's tight budget: a label is small, and the caller may simply resend."""
    queue = None
    if settings.feedback_queue_url:
        queue = SqsLabelQueue(client_on_registry_budget("sqs", settings), settings.feedback_queue_url)
    return FeedbackService(queue, settings.label_retention_days, settings.max_labels_per_request)
