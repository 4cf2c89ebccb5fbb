"""Fixtures shared by integration tests: IAM-checked calls, model-sync's moto stack, endpoints on a module's world."""

from __future__ import annotations

import importlib
from collections.abc import Iterator
from typing import Any

import boto3
import botocore.session
import moto.s3.models
import pytest
from moto import mock_aws

from house_prices.observability import metrics
from house_prices.registry import ModelRegistry
from house_prices.schema import SEED_CITIES
from local.s3 import create_table
from local.template import Template
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
        for city in SEED_CITIES:
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
