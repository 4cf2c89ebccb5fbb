"""The one home of the Powertools logger, tracer and metrics for every function.

Each function's environment names its service (``POWERTOOLS_SERVICE_NAME``) and the shared
metrics namespace (``POWERTOOLS_METRICS_NAMESPACE``). Metric dimensions are low-cardinality only:
never a city or a version.
"""

from __future__ import annotations

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

logger = Logger()
tracer = Tracer()
metrics = Metrics()

__all__ = ["MetricUnit", "logger", "metrics", "tracer"]
