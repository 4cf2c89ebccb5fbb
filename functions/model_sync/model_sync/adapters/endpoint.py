"""Pre-warm: one tiny InvokeEndpoint for a freshly promoted TargetModel, so users don't pay its first load.

The client is created in wiring.py the ordinary way (``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` points it
at the local endpoint). Every botocore failure becomes a DependencyFailure; the caller logs and counts
it and never lets it block a promotion.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from house_prices.errors import DependencyFailure
from house_prices.schema import EXAMPLE_HOUSE, FEATURE_NAMES, rows_to_csv

# One plausible house: the smallest request that makes the endpoint download and load the model.
WARM_BODY = rows_to_csv([[EXAMPLE_HOUSE[name] for name in FEATURE_NAMES]])


class EndpointWarmer:
    def __init__(self, client: Any, endpoint_name: str) -> None:
        self._client = client
        self._endpoint_name = endpoint_name

    def warm(self, target_model: str) -> None:
        try:
            response = self._client.invoke_endpoint(
                EndpointName=self._endpoint_name,
                TargetModel=target_model,
                ContentType="text/csv",
                Accept="application/json",
                Body=WARM_BODY,
            )
            response["Body"].read()
        except (BotoCoreError, ClientError) as error:
            raise DependencyFailure(f"pre-warm of {target_model} on {self._endpoint_name} failed: {error}") from error
