"""SageMaker Runtime InvokeEndpoint for shadow scoring: the candidate's prices of a batch of captured rows.

``quality.wiring`` builds the botocore client the ordinary way (timeouts and attempts are settings), so
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` points it at the local endpoint without any "local" branch here.
Every failure becomes a domain error, which shadow scoring counts as the candidate's failed call.
"""

from __future__ import annotations

import json
import math
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from house_prices.errors import EndpointTimeout, EndpointUnavailable, ModelInvocationError

CSV = "text/csv"
JSON = "application/json"


class SageMakerScorer:
    def __init__(self, client: Any, endpoint_name: str) -> None:
        self.client = client
        self.endpoint_name = endpoint_name

    def invoke(self, target_model: str, csv_body: str) -> list[float]:
        """One InvokeEndpoint call; one finite price per CSV row, in row order."""
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                TargetModel=target_model,
                ContentType=CSV,
                Accept=JSON,
                Body=csv_body.encode("utf-8"),
            )
            payload = response["Body"].read()
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "ModelError":
                raise ModelInvocationError(f"{target_model} failed: {error}") from error
            raise EndpointUnavailable(f"InvokeEndpoint {target_model} failed ({code}): {error}") from error
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            raise EndpointTimeout(f"InvokeEndpoint {target_model} timed out: {error}") from error
        except BotoCoreError as error:
            raise EndpointUnavailable(f"InvokeEndpoint {target_model} failed: {error}") from error
        return parse_prices(payload)


def parse_prices(payload: bytes) -> list[float]:
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
