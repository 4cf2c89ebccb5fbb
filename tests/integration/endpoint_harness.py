"""One way for the endpoint's integration tests to start in-process endpoints on a moto bucket.

Each test module builds its own ``world`` (an ``EndpointWorld`` holding the artifacts it needs, through
``artifact_bucket``); the ``start`` fixture in conftest.py starts endpoints on it. Starting endpoints and
writing CSV bodies live here once.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from endpoint.app import Runtime, create_app
from endpoint.config import EndpointConfig, ModelDataUrl
from testkit.aws import moto_s3, s3_client
from testkit.servers import serve_in_thread

Start = Callable[..., tuple[str, Runtime]]


@dataclass(frozen=True)
class EndpointWorld:
    """A test module's endpoints: their bucket on a moto server, and the program directory they run by default.

    Test modules subclass it to carry what they built the artifacts from (models, sizes).
    """

    bucket: str
    prefix: str
    endpoint_name: str
    s3_url: str
    programs: Path


@contextlib.contextmanager
def artifact_bucket(bucket: str, prefix: str, artifacts: Mapping[str, bytes]) -> Iterator[str]:
    """A moto server with ``bucket`` holding each artifact under ``prefix``; yields the server's URL."""
    with moto_s3(bucket) as s3_url:
        s3 = s3_client(s3_url)
        for name, body in artifacts.items():
            s3.put_object(Bucket=bucket, Key=prefix + name, Body=body)
        yield s3_url


@contextlib.contextmanager
def endpoint_starter(world: EndpointWorld) -> Iterator[Start]:
    """``start(**config_overrides)`` -> (url, runtime); every endpoint started stops when the block ends.

    Their S3 clients are ordinary boto3 clients: the caller points ``AWS_ENDPOINT_URL_S3`` at the bucket.
    """
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> tuple[str, Runtime]:
            overrides.setdefault("submit_directory", world.programs)
            config = EndpointConfig(
                model_data_url=ModelDataUrl.parse(f"s3://{world.bucket}/{world.prefix}"),
                endpoint_name=world.endpoint_name,
                **overrides,
            )
            app = create_app(config)
            return stack.enter_context(serve_in_thread(app)), app.state.runtime

        yield start


def csv_rows(rows: np.ndarray) -> str:
    """A headerless CSV body, one line per row, every value exact (repr)."""
    return "\n".join(",".join(repr(float(value)) for value in row) for row in rows)


def invocation_error(client: Any, error: str, endpoint_name: str, target_model: str, body: str = "1") -> dict[str, Any]:
    """Invoke ``target_model`` with a CSV body, expecting botocore to raise ``error``; returns the error response.

    Any other outcome (success, another error) fails the test.
    """
    with pytest.raises(getattr(client.exceptions, error)) as caught:
        client.invoke_endpoint(EndpointName=endpoint_name, TargetModel=target_model, ContentType="text/csv", Body=body)
    response: dict[str, Any] = caught.value.response
    return response


async def invoke_many(url: str, endpoint_name: str, targets: list[str], body: str) -> list[httpx.Response]:
    """One concurrent InvokeEndpoint per target (a connection each), as raw HTTP; the responses in order."""
    limits = httpx.Limits(max_connections=len(targets), max_keepalive_connections=len(targets))
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        return await asyncio.gather(
            *(
                client.post(
                    f"/endpoints/{endpoint_name}/invocations",
                    content=body,
                    headers={"Content-Type": "text/csv", "X-Amzn-SageMaker-Target-Model": target},
                )
                for target in targets
            )
        )
