"""Fixtures shared by integration tests: IAM-checked calls, model-sync's moto stack, endpoints on a module's world,
the router's real wiring with Stubbers on its runtime clients, the quality function's moto resources."""

from __future__ import annotations

import importlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import boto3
import botocore.session
import moto.s3.models
import pytest
from aws_lambda_powertools.metrics.provider import cold_start
from botocore.stub import Stubber
from moto import mock_aws

from house_prices.observability import metrics
from house_prices.registry import ModelRegistry
from house_prices.schema import NOTEBOOK_CITIES
from local.moto_services import create_table
from local.template import Template
from tests import quality_doubles as quality_kit
from tests import router_doubles as router_kit
from tests.iam import CallRecorder
from tests.integration.endpoint_harness import EndpointWorld, Start, endpoint_starter
from tests.integration.model_sync_harness import BUCKET, LAYOUT, TABLE, Clock, Stack, environment
from tests.unit.test_artifacts_inspection import validation_csv


@pytest.fixture(autouse=True)
def iam_checked_calls(monkeypatch: pytest.MonkeyPatch) -> Iterator[CallRecorder]:
    """Every AWS call a template function's handler makes in a test must be granted by template.yaml.

    Records the operations through botocore's before-parameter-build event (the API parameters) and,
    after the test, compares them with the function's role in the transformed template (tests/iam.py).
    A denied call fails the test.
    """
    recorder = CallRecorder()
    create_client = botocore.session.Session.create_client

    def create_recorded_client(session: botocore.session.Session, *args: Any, **kwargs: Any) -> Any:
        client = create_client(session, *args, **kwargs)
        client.meta.events.register("before-parameter-build.*.*", recorder.hook)
        return client

    monkeypatch.setattr(botocore.session.Session, "create_client", create_recorded_client)
    for spec in Template.load().functions().values():
        module = importlib.import_module(spec.module)
        monkeypatch.setattr(module, spec.attribute, recorder.wrap(spec.logical_id, getattr(module, spec.attribute)))
    yield recorder
    problems = recorder.denials()
    if problems:
        pytest.fail("IAM would deny calls made by the handlers:\n" + "\n".join(problems), pytrace=False)


@pytest.fixture
def stack(monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    environment(monkeypatch)
    clock = Clock()
    monkeypatch.setattr(moto.s3.models, "utcnow", clock)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    from model_sync import handler

    handler.service.cache_clear()
    with mock_aws():
        s3 = boto3.client("s3")
        s3.create_bucket(Bucket=BUCKET)
        # Every city's held-out rows, which the quality gate measures candidate and live models on.
        for city in NOTEBOOK_CITIES:
            s3.put_object(Bucket=BUCKET, Key=LAYOUT.prep_key(city, "val"), Body=validation_csv())
        clock.now = Clock().now  # tests read versions off the clock: start it after the fixture's writes
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, TABLE)
        yield Stack(s3, dynamodb, ModelRegistry(dynamodb, TABLE), clock)
    handler.service.cache_clear()
    metrics.clear_metrics()


@pytest.fixture
def start(world: EndpointWorld, monkeypatch: pytest.MonkeyPatch) -> Iterator[Start]:
    """Start endpoints on the requesting module's ``world`` (every endpoint test module defines one).

    Their S3 clients are steered to the world's moto server by AWS_ENDPOINT_URL_S3, as in any process.
    """
    monkeypatch.setenv("AWS_ENDPOINT_URL_S3", world.s3_url)
    with endpoint_starter(world) as starter:
        yield starter


@pytest.fixture
def stub_router(monkeypatch: pytest.MonkeyPatch) -> Iterator[router_kit.StubRouter]:
    """Build the router's real service (settings from env, real clients) with a Stubber on each client that
    ``clients(service)`` names; after the test every queued response must have been used.

    Request it after the module's moto registry, so the stubs go before moto does."""
    from router import handler, wiring

    made: dict[str, Stubber] = {}

    def start(clients: Callable[[Any], Mapping[str, Any]]) -> dict[str, Stubber]:
        monkeypatch.setenv("POWERTOOLS_SERVICE_NAME", "router")
        monkeypatch.setenv("ENDPOINT_NAME", router_kit.ENDPOINT)
        monkeypatch.setenv("REGISTRY_TABLE", router_kit.TABLE)
        real_build = wiring.build_service

        def build(settings: Any) -> Any:
            service = real_build(settings)
            for name, client in clients(service).items():
                made[name] = Stubber(client)
                made[name].activate()
            return service

        monkeypatch.setattr(wiring, "build_service", build)
        handler.service.cache_clear()
        cold_start.is_cold_start = True
        handler.service()
        return made

    yield start
    for stub in made.values():
        stub.assert_no_pending_responses()
        stub.deactivate()
    handler.service.cache_clear()
    metrics.clear_metrics()


@pytest.fixture
def router_registry() -> Iterator[ModelRegistry]:
    """An empty registry table on moto DynamoDB (the router's ``REGISTRY_TABLE``)."""
    with mock_aws():
        client = boto3.client("dynamodb")
        create_table(client, router_kit.TABLE)
        yield ModelRegistry(client, router_kit.TABLE)


@pytest.fixture
def quality_table(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    """An empty quality table (``quality_kit.QUALITY_TABLE``) on moto DynamoDB, and its client."""
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    with mock_aws():
        client = boto3.client("dynamodb", region_name="us-east-1")
        create_table(client, quality_kit.QUALITY_TABLE)
        yield client


@pytest.fixture
def quality_aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[quality_kit.QualityAws]:
    """The quality function's settings and its resources on moto: the bucket, its four tables, the feedback
    queue. The handler builds its service on first use, so a module may add settings after this."""
    from quality import handler

    for name, value in {
        "POWERTOOLS_SERVICE_NAME": "quality",
        "ARTIFACT_BUCKET": quality_kit.BUCKET,
        "MODEL_PREFIX": quality_kit.LAYOUT.prefix,
        "QUALITY_TABLE": quality_kit.QUALITY_TABLE,
        "LABEL_LEDGER_TABLE": quality_kit.LEDGER_TABLE,
        "REGISTRY_TABLE": quality_kit.REGISTRY_TABLE,
        "HOUSE_INDEX_TABLE": quality_kit.HOUSES_TABLE,
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(boto3, "DEFAULT_SESSION", None)
    handler.service.cache_clear()
    try:
        with mock_aws():
            s3 = boto3.client("s3")
            s3.create_bucket(Bucket=quality_kit.BUCKET)
            dynamodb = boto3.client("dynamodb")
            for table in quality_kit.TABLES:
                create_table(dynamodb, table)
            sqs = boto3.client("sqs")
            queue_url = sqs.create_queue(QueueName=f"{quality_kit.STACK}-FeedbackQueue")["QueueUrl"]
            monkeypatch.setenv("FEEDBACK_QUEUE_URL", queue_url)
            yield quality_kit.QualityAws(s3, dynamodb, sqs, queue_url)
    finally:
        handler.service.cache_clear()
        metrics.clear_metrics()
