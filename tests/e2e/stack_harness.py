"""What the e2e suites share besides fixtures: trained cities, the demo's train-and-publish, S3 events, queues."""

from __future__ import annotations

import io
import tarfile
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import numpy as np
import pytest
from botocore.exceptions import ClientError
from rich.console import Console

from house_prices import schema
from house_prices.naming import KeyLayout
from house_prices.registry import ModelRegistry
from local.demo import train_and_publish, wait_for_live
from local.stack import LocalStack

CITIES = ("Chicago_IL", "Dallas_TX", "Phoenix_AZ")
# Trained on the dense-serving stack: one city keeps that suite short.
DENSE_CITIES = ("Chicago_IL",)
# The demo's training table and progress bars would only clutter pytest's captured output.
QUIET = Console(quiet=True)


def train(stack: LocalStack, cities: tuple[str, ...], work_dir: Path, **options: Any) -> dict[str, str]:
    """Train and publish as `make demo` does (real train.py processes); returns each city's artifact key."""
    keys = train_and_publish(stack, cities, QUIET, work_dir, progress=False, workers=2, **options)
    return {city: city_keys[-1] for city, city_keys in keys.items()}


def train_until_live(
    stack: LocalStack, registry: ModelRegistry, cities: tuple[str, ...], work_dir: Path, timeout: float
) -> dict[str, Any]:
    """What a suite's ``trained`` fixture holds: each city's artifact key, and its live model once promoted."""
    keys = train(stack, cities, work_dir)
    live = wait_for_live(registry, cities, QUIET, timeout=timeout)
    return {"keys": keys, "live": live}


def houses(city: str, n: int, seed: int) -> list[dict[str, float]]:
    from training.data import generate_houses

    return [schema.house_from_row(row) for row in generate_houses(city, n, seed)[:, 1:]]


def reference_predictions(stack: LocalStack, city: str, version: str, batch: list[dict], tmp: Path) -> list[float]:
    """Predict with training/inference.py on the artifact downloaded from local S3 by hand."""
    from training import inference

    key = KeyLayout(stack.info.prefix).mme_key(city, version)
    body = stack.client("s3").get_object(Bucket=stack.info.bucket, Key=key)["Body"].read()
    model_dir = tmp / f"{city}-{version}"
    with tarfile.open(fileobj=io.BytesIO(body), mode="r:gz") as archive:
        archive.extractall(model_dir, filter="data")
    model = inference.model_fn(str(model_dir))
    csv = schema.rows_to_csv([[house[name] for name in schema.FEATURE_NAMES] for house in batch])
    return [float(value) for value in np.ravel(inference.predict_fn(inference.input_fn(csv, "text/csv"), model))]


def malicious_artifact(marker: Path) -> bytes:
    """A model.tar.gz whose model.joblib writes ``marker`` if it is ever unpickled, claiming a tiny error."""
    import json
    import pickle

    from testkit.models import tar_gz
    from tests.pickle_payloads import WritesMarker

    claims = {"validation": {"ae_p50": 1.0}, "features": list(schema.FEATURE_NAMES)}
    return tar_gz({"model.joblib": pickle.dumps(WritesMarker(marker)), "metrics.json": json.dumps(claims).encode()})


def invoke_pickle_under_the_model_prefix(stack: LocalStack, marker: Path) -> ClientError:
    """Write ``malicious_artifact(marker)`` straight under the endpoint's model prefix (bypassing model-sync), invoke
    it by TargetModel, and return the ModelError that must come back."""
    target = "Evil_TX.20260101T000000Z-0badc0de.tar.gz"
    key = KeyLayout(stack.info.prefix).mme_prefix + target
    stack.client("s3").put_object(Bucket=stack.info.bucket, Key=key, Body=malicious_artifact(marker))
    runtime = stack.client("sagemaker-runtime")
    with pytest.raises(runtime.exceptions.ModelError) as failed:
        runtime.invoke_endpoint(
            EndpointName=stack.info.endpoint_name,
            TargetModel=target,
            ContentType="text/csv",
            Body="2005,3100,4,2.5,1.1,2",
        )
    return failed.value


def s3_event(stack: LocalStack, key: str) -> dict[str, Any]:
    """The notification S3 sends model-sync's queue when ``key`` is written to the stack's bucket."""
    return {
        "Records": [
            {
                "eventVersion": "2.1",
                "eventSource": "aws:s3",
                "awsRegion": stack.info.region,
                "eventName": "ObjectCreated:Put",
                "s3": {"bucket": {"name": stack.info.bucket}, "object": {"key": quote_plus(key)}},
            }
        ]
    }


def queue_depth(stack: LocalStack, queue_url: str) -> int:
    """Messages waiting plus messages in flight (received, not yet deleted)."""
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = stack.client("sqs").get_queue_attributes(QueueUrl=queue_url, AttributeNames=names)["Attributes"]
    return sum(int(attributes[name]) for name in names)


def wait_drained(stack: LocalStack, queue_url: str | None = None, timeout: float = 60) -> None:
    """Wait until ``queue_url`` (default: model-sync's event queue) is empty; fail the test if it is not."""
    url = queue_url or stack.info.queues["ModelSyncFunction"]["queue_url"]
    deadline = time.monotonic() + timeout
    while (depth := queue_depth(stack, url)) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert depth == 0, f"{url} not drained: {depth} message(s) left"
