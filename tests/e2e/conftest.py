"""One local stack per session for every e2e suite, and the cities trained on it; and one in dense serving."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from house_prices.registry import ModelRegistry
from local.stack import LocalStack, StackConfig
from tests.e2e.stack_harness import CITIES, DENSE_CITIES, train_until_live


def _config(state_dir: Path, **settings: Any) -> StackConfig:
    # The router's live-version cache is off, so a promotion is visible at once.
    return StackConfig(
        state_dir=state_dir,
        write_stack_file=False,
        function_env={"RouterFunction": {"LIVE_MODEL_CACHE_SECONDS": "0"}},
        **settings,
    )


def _run(config: StackConfig) -> Iterator[LocalStack]:
    with LocalStack(config) as running:
        yield running
    # Teardown check: nothing of the stack outlives it
    assert all(child.process is None or child.process.poll() is not None for child in running.children)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # Captured predictions reach S3 within about a second instead of the template's 300 s Firehose buffering.
    yield from _run(_config(tmp_path_factory.mktemp("stack"), capture_buffer_seconds=1.0))


@pytest.fixture(scope="session")
def registry(stack: LocalStack) -> ModelRegistry:
    return ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)


@pytest.fixture(scope="session")
def trained(stack: LocalStack, registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_until_live(stack, registry, CITIES, tmp_path_factory.mktemp("training"), timeout=60)


@pytest.fixture(scope="session")
def dense_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """The stack as `make up SERVING=dense` runs it: the endpoint is the SageMaker side in front of the container."""
    yield from _run(_config(tmp_path_factory.mktemp("dense-stack"), serving="dense"))


@pytest.fixture(scope="session")
def dense_trained(dense_stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> dict:
    registry = ModelRegistry(dense_stack.client("dynamodb"), dense_stack.info.registry_table)
    return train_until_live(dense_stack, registry, DENSE_CITIES, tmp_path_factory.mktemp("dense-training"), timeout=60)
