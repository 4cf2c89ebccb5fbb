"""SageMaker Runtime InvokeEndpoint for shadow scoring: the candidate's prices of a batch of captured rows.

``quality.wiring`` builds the botocore client the ordinary way (timeouts and attempts are settings), so
``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` points it at the local endpoint without any "local" branch here.
Every failure becomes a domain error, which shadow scoring counts as the candidate's failed call.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from house_prices.errors import EndpointTimeout, EndpointUnavailable, ModelInvocationError
from house_prices.predictions import invoke_csv, parse_predictions


class SageMakerScorer:
    def __init__(self, client: Any, endpoint_name: str) -> None:
        self.client = client
        self.endpoint_name = endpoint_name

    def invoke(self, target_model: str, csv_body: str) -> list[float]:
        """One InvokeEndpoint call; one finite price per CSV row, in row order."""
        try:
            payload = invoke_csv(self.client, self.endpoint_name, target_model, csv_body)
        except ClientError as error:
            code = str(error.response.get("Error", {}).get("Code", ""))
            if code == "ModelError":
                raise ModelInvocationError(f"{target_model} failed: {error}") from error
            raise EndpointUnavailable(f"InvokeEndpoint {target_model} failed ({code}): {error}") from error
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            raise EndpointTimeout(f"InvokeEndpoint {target_model} timed out: {error}") from error
        except BotoCoreError as error:
            raise EndpointUnavailable(f"InvokeEndpoint {target_model} failed: {error}") from error
        return parse_predictions(payload)
