"""Composition root: settings -> boto3 clients -> adapters -> RouterService (once per container)."""

from __future__ import annotations

from router.adapters.endpoint import SageMakerEndpoint
from router.adapters.registry import CachedRegistry
from router.logic import RouterService
from router.settings import RouterSettings


def build_service(settings: RouterSettings) -> RouterService:
    return RouterService(
        CachedRegistry.from_settings(settings),
        SageMakerEndpoint.from_settings(settings),
        settings.max_houses_per_request,
    )
