"""Composition root: settings -> boto3 clients -> adapters -> RouterService (once per container)."""

from __future__ import annotations

import boto3

from router.adapters.endpoint import SageMakerEndpoint
from router.adapters.registry import CachedRegistry
from router.logic import RouterService
from router.settings import RouterSettings


def build_service(settings: RouterSettings) -> RouterService:
    registry = CachedRegistry.from_client(
        boto3.client("dynamodb"), settings.registry_table, settings.live_model_cache_seconds
    )
    return RouterService(registry, SageMakerEndpoint.from_settings(settings), settings.max_houses_per_request)
