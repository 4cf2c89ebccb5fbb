"""One local stack per session for every e2e suite, and the cities trained on it."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from house_prices.registry import ModelRegistry
from local.stack import LocalStack, StackConfig
from tests.e2e.stack_harness import CITIES, train_until_live


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    # The router's live-version cache is off, so a promotion is visible at once.
    config = StackConfig(
        state_dir=tmp_path_factory.mktemp("stack"),
        write_stack_file=False,
        function_env={"RouterFunction": {"LIVE_MODEL_CACHE_SECONDS": "0"}},
    )
    with LocalStack(config) as running:
        yield running
    # Teardown check: nothing of the stack outlives it
    assert all(child.process is None or child.process.poll() is not None for child in running.children)


@pytest.fixture(scope="session")
def registry(stack: LocalStack) -> ModelRegistry:
    return ModelRegistry(stack.client("dynamodb"), stack.info.registry_table)


@pytest.fixture(scope="session")
def trained(stack: LocalStack, registry: ModelRegistry, tmp_path_factory: pytest.TempPathFactory) -> dict:
    return train_until_live(stack, registry, CITIES, tmp_path_factory.mktemp("training"), timeout=60)
