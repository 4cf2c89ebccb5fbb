"""Local AWS for tests and benchmarks: a moto S3 server, and boto3 clients for it and a local endpoint."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any


@contextlib.contextmanager
def moto_s3(bucket: str) -> Iterator[str]:
    """A moto server on 127.0.0.1 and a free port with ``bucket`` created; yields its URL."""
    import logging

    from moto.server import ThreadedMotoServer

    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one access-log line per S3 call otherwise
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    url = f"http://{host}:{port}"
    try:
        s3_client(url).create_bucket(Bucket=bucket)
        yield url
    finally:
        server.stop()


def s3_client(endpoint_url: str) -> Any:
    """An S3 client for a local moto server (dummy credentials, usable before env fixtures apply)."""
    import boto3

    return boto3.client(
        "s3",
        endpoint_url=endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def sagemaker_runtime(endpoint_url: str, **config: Any) -> Any:
    """A real boto3 ``sagemaker-runtime`` client pointed at a local endpoint."""
    import boto3
    from botocore.config import Config

    config.setdefault("retries", {"mode": "standard", "total_max_attempts": 1})
    return boto3.client(
        "sagemaker-runtime", endpoint_url=endpoint_url, region_name="us-east-1", config=Config(**config)
    )
