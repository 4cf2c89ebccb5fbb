"""One way for the endpoint's integration tests to start in-process endpoints on a moto bucket.

Each test module keeps its own ``world`` (the artifacts it needs); starting endpoints and writing CSV
bodies live here once.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from endpoint.app import Runtime, create_app
from endpoint.config import EndpointConfig, ModelDataUrl
from endpoint.testing import serve_in_thread

Start = Callable[..., tuple[str, Runtime]]


@contextlib.contextmanager
def endpoint_starter(bucket: str, prefix: str, endpoint_name: str, programs: Path) -> Iterator[Start]:
    """``start(**config_overrides)`` -> (url, runtime); every endpoint started stops when the block ends.

    Their S3 clients are ordinary boto3 clients: the caller points ``AWS_ENDPOINT_URL_S3`` at the bucket.
    """
    with contextlib.ExitStack() as stack:

        def start(**overrides: Any) -> tuple[str, Runtime]:
            overrides.setdefault("submit_directory", programs)
            config = EndpointConfig(
                model_data_url=ModelDataUrl.parse(f"s3://{bucket}/{prefix}"), endpoint_name=endpoint_name, **overrides
            )
            app = create_app(config)
            return stack.enter_context(serve_in_thread(app)), app.state.runtime

        yield start


def csv_rows(rows: np.ndarray) -> str:
    """A headerless CSV body, one line per row, every value exact (repr)."""
    return "\n".join(",".join(repr(float(value)) for value in row) for row in rows)
