"""The model server's contract on InvokeEndpoint, as the router and shadow scoring both read it.

CSV rows in, a JSON list of finite prices out. Pure Python (json and math only), so the router's cold
start pays nothing for it; each adapter keeps its own botocore error mapping, since the router answers
a client (busy, time-out, retry-after) while shadow scoring only counts a failed call.
"""

from __future__ import annotations

import json
import math
from typing import Any

from house_prices.errors import ModelInvocationError

CSV = "text/csv"
JSON = "application/json"


def invoke_csv(client: Any, endpoint_name: str, target_model: str, csv_body: str, **extra: Any) -> bytes:
    """One InvokeEndpoint call of CSV rows for a JSON answer; botocore errors pass through to the caller."""
    response = client.invoke_endpoint(
        EndpointName=endpoint_name,
        TargetModel=target_model,
        ContentType=CSV,
        Accept=JSON,
        Body=csv_body.encode("utf-8"),
        **extra,
    )
    payload: bytes = response["Body"].read()
    return payload


def parse_predictions(payload: bytes) -> list[float]:
    """The model server contract: a JSON list of finite numbers, one per row."""
    try:
        decoded = json.loads(payload)
    except (ValueError, UnicodeDecodeError) as error:
        raise ModelInvocationError("The model returned a response that is not JSON") from error
    if not isinstance(decoded, list) or not all(
        isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v) for v in decoded
    ):
        raise ModelInvocationError("The model returned something other than a list of finite numbers")
    return [float(v) for v in decoded]
