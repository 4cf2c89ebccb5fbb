"""Loading one TargetModel: download (disk cache) -> the program's ``model_fn`` -> measure its size.

Runs in the store's load pool; the store decides when to load and keeps the result. The loader
knows no model format: ``model_fn`` returns whatever it returns, and the size is what
``endpoint.memory.model_bytes`` measures of it.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any

from endpoint.download import ArtifactCache
from endpoint.errors import ContainerError
from endpoint.memory import model_bytes, rss_bytes
from endpoint.metrics import EndpointMetrics
from endpoint.program import InferenceProgram
from endpoint.store import Loaded

log = logging.getLogger("endpoint.loader")

# What a model's directory is called inside a SageMaker MME container: error messages show this, not our paths.
CONTAINER_MODEL_ROOT = "/opt/ml/models"


class ModelLoader:
    def __init__(self, program: InferenceProgram, artifacts: ArtifactCache, metrics: EndpointMetrics) -> None:
        self._program = program
        self._artifacts = artifacts
        self._metrics = metrics

    def __call__(self, target_model: str) -> Loaded[Any]:
        fetched = self._artifacts.fetch(target_model)
        if fetched.downloaded:
            self._metrics.model_downloads.inc()
            self._metrics.model_downloading_time.observe(fetched.seconds)
        try:
            started = time.perf_counter()
            rss_before = rss_bytes()
            try:
                model = self._program.load_model(fetched.model_dir)
            except ContainerError as error:
                raise ContainerError(_hide_paths(error.message, fetched.model_dir), error.status) from error
            rss_delta = rss_bytes() - rss_before
            try:
                size, method = model_bytes(model), "measured"
            except Exception:  # neither sized nor picklable: fall back to the (noisier) RSS growth
                size, method = max(rss_delta, 0), "rss"
            elapsed = time.perf_counter() - started
        finally:
            self._artifacts.unpin(fetched.model_dir)
        self._metrics.model_loads.inc()
        self._metrics.model_loading_time.observe(elapsed)
        log.debug("loaded %s in %.4fs: %d bytes (%s), rss %+d", target_model, elapsed, size, method, rss_delta)
        return Loaded(value=model, size_bytes=size)


def _hide_paths(message: str, model_dir: Path) -> str:
    """Clients see where SageMaker would have put the model, never this machine's cache path."""
    return message.replace(str(model_dir), f"{CONTAINER_MODEL_ROOT}/{model_dir.name}/model")
