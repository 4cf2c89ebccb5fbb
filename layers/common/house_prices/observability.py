"""The one home of the Powertools logger, tracer and metrics for every function.

Each function's environment names its service (``POWERTOOLS_SERVICE_NAME``) and the shared
metrics namespace (``POWERTOOLS_METRICS_NAMESPACE``). Metric dimensions are low-cardinality only:
never a city or a version.

The tracer sends X-Ray subsegments through ``house_prices.tracing`` instead of the X-Ray SDK (the
SDK was more than half of the router's cold import). ``disabled=False`` keeps Powertools from
importing the SDK to switch it off; the provider itself sends nothing without a sampled trace, so
tests and the local stack stay silent. ``auto_patch=False``: wiring instruments the clients it builds
(``trace_aws_calls``).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools import Logger, Metrics, Tracer
from aws_lambda_powertools.metrics import MetricUnit

from house_prices.tracing import XRayDaemonProvider, trace_aws_calls

logger = Logger()
tracer = Tracer(provider=XRayDaemonProvider(), disabled=False, auto_patch=False)
metrics = Metrics()


def traced(client: Any) -> Any:
    """``client`` with one X-Ray subsegment per AWS API call."""
    return trace_aws_calls(client, tracer.provider)


__all__ = ["MetricUnit", "logger", "metrics", "traced", "tracer"]
