"""Composition root: settings -> boto3 client -> adapters -> RolloutDecider (once per execution environment).

``decider`` is also what ``python -m ops rollout evaluate`` calls with its own client and table names.
"""

from __future__ import annotations

from typing import Any

import boto3
from botocore.config import Config

from house_prices.observability import traced
from house_prices.registry import ModelRegistry
from rollouts.adapters.evidence import DynamoEvidence
from rollouts.adapters.registry import RegistryRollouts
from rollouts.logic import RolloutDecider, judge
from rollouts.settings import RolloutSettings

# A tick is cheap to redo (the next minute decides again), so few retries and short timeouts: a tick
# must end well before the next one starts.
_CLIENT_CONFIG = Config(retries={"mode": "standard", "total_max_attempts": 3}, connect_timeout=2, read_timeout=5)


def decider(dynamodb_client: Any, registry_table: str, quality_table: str) -> RolloutDecider:
    """The decider over these tables (the function's and the operator CLI's)."""
    return RolloutDecider(
        registry=RegistryRollouts(ModelRegistry(dynamodb_client, registry_table)),
        evidence=DynamoEvidence(dynamodb_client, quality_table),
        judge=judge,
    )


def build_decider(settings: RolloutSettings) -> RolloutDecider:
    dynamodb = traced(boto3.client("dynamodb", config=_CLIENT_CONFIG))
    return decider(dynamodb, settings.registry_table, settings.quality_table)
