"""Prometheus metrics of the local endpoint, in a per-app registry (several servers per process is fine).

The model-loading metrics reuse SageMaker's multi-model endpoint names. CloudWatch reports their
times in microseconds; Prometheus convention is seconds, so these histograms are in seconds.
``ModelCacheHit`` is a summary of 1 (hit) / 0 (miss) per request, so ``_sum / _count`` is the hit
ratio - CloudWatch's Average statistic of the same metric.

No series is labelled by model: a TargetModel names a city (never a metric dimension here), any caller
can invent one, and SageMaker publishes no per-model metrics either. Per-model series also cost: with
10,000 models, four labelled counters took 26 MiB and one /metrics render 1.3 s on the event loop.
Which models are loaded is in the log (debug) and ``ModelStore.loaded_names``.

The hot path pays little for metrics: a cache hit adds one to a plain integer (rendered as the
ModelCacheHit summary at scrape time), and each (model, outcome) keeps its prometheus child objects
so a request does not look its label up again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST
from prometheus_client.metrics_core import Metric, SummaryMetricFamily
from prometheus_client.registry import Collector

_TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)

__all__ = ["CONTENT_TYPE_LATEST", "EndpointMetrics"]


class EndpointMetrics:
    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry(auto_describe=True)
        r = self.registry
        self.model_loading_wait_time = Histogram(
            "ModelLoadingWaitTime",
            "Seconds an invocation waited for its target model to be downloaded and/or loaded.",
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.model_downloading_time = Histogram(
            "ModelDownloadingTime", "Seconds to download a model from S3.", buckets=_TIME_BUCKETS, registry=r
        )
        self.model_loading_time = Histogram(
            "ModelLoadingTime", "Seconds to load a model (model_fn + measuring).", buckets=_TIME_BUCKETS, registry=r
        )
        self.model_unloading_time = Histogram(
            "ModelUnloadingTime",
            "Seconds to unload a model (drop + gc + malloc_trim).",
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        # Plain integers, written on the event loop thread only (ModelStore) and read at scrape time.
        self.cache_hits = 0
        self.cache_misses = 0
        r.register(_CacheHitCollector(self))
        self.loaded_model_count = Gauge("LoadedModelCount", "Models loaded in memory.", registry=r)
        self.loaded_model_bytes = Gauge(
            "LoadedModelBytes", "Sum of the measured sizes of the loaded models.", registry=r
        )
        self.invocations = Counter(
            "endpoint_invocations", "InvokeEndpoint requests by outcome (OK or the error code).", ["code"], registry=r
        )
        # Not per model: a histogram child is ~20 objects, and thousands of models would make it megabytes.
        self.invocation_latency = Histogram(
            "endpoint_invocation_latency_seconds",
            "InvokeEndpoint latency of successful requests as the server sees it (including any model load).",
            buckets=_TIME_BUCKETS,
            registry=r,
        )
        self.model_downloads = Counter("endpoint_model_downloads", "Artifacts downloaded from S3.", registry=r)
        self.model_loads = Counter("endpoint_model_loads", "model_fn calls.", registry=r)
        self.model_unloads = Counter("endpoint_model_unloads", "Models unloaded.", registry=r)
        self.model_load_failures = Counter("endpoint_model_load_failures", "Failed downloads or loads.", registry=r)

        self._outcomes: dict[str, Any] = {}

    def invocation(self, code: str, seconds: float | None) -> None:
        """Count one InvokeEndpoint outcome; ``seconds`` (successes only) goes to the latency histogram."""
        counter = self._outcomes.get(code)
        if counter is None:
            counter = self._outcomes[code] = self.invocations.labels(code)
        counter.inc()
        if seconds is not None:
            self.invocation_latency.observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _CacheHitCollector(Collector):
    def __init__(self, metrics: EndpointMetrics) -> None:
        self._metrics = metrics

    def collect(self) -> Iterator[Metric]:
        hits, misses = self._metrics.cache_hits, self._metrics.cache_misses
        yield SummaryMetricFamily(
            "ModelCacheHit",
            "1 per invocation whose model was already loaded, else 0 (mean = hit ratio).",
            count_value=hits + misses,
            sum_value=hits,
        )
