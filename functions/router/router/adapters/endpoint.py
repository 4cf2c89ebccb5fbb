"""SageMaker Runtime InvokeEndpoint on the multi-model endpoint, with botocore failures as domain errors.

``router.wiring`` builds the client the ordinary way, so ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME`` points it
at the local endpoint without any "local" branch here.
"""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError, ConnectTimeoutError, ReadTimeoutError

from house_prices.errors import EndpointBusy, EndpointTimeout, EndpointUnavailable, ModelInvocationError
from house_prices.observability import logger, tracer
from house_prices.predictions import invoke_csv, parse_predictions

# Codes SageMaker uses for "try again shortly"; botocore has already retried them ENDPOINT_MAX_ATTEMPTS times.
_BUSY_CODES = frozenset({"ModelNotReadyException", "ThrottlingException", "ServiceUnavailable", "TooManyRequests"})
_BUSY_STATUSES = frozenset({429, 503})
DEFAULT_RETRY_AFTER_SECONDS = 1


class SageMakerEndpoint:
    def __init__(self, client: Any, endpoint_name: str, read_timeout_seconds: float | None = None) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self._read_timeout = read_timeout_seconds

    @tracer.capture_method
    def invoke(self, target_model: str, csv_body: str, inference_id: str | None = None) -> list[float]:
        """One InvokeEndpoint call; returns one price per CSV row.

        ``inference_id`` becomes SageMaker's ``InferenceId`` (1-64 printable ASCII characters, not starting
        with white space: the service model's ``\\A\\S[\\p{Print}]*\\z``), which SageMaker adds to what
        it captures and logs for the call.
        """
        try:
            extra = {"InferenceId": inference_id} if inference_id is not None else {}
            payload = invoke_csv(self.client, self.endpoint_name, target_model, csv_body, **extra)
        except ClientError as error:
            raise _client_error(error, target_model) from error
        except (ReadTimeoutError, ConnectTimeoutError) as error:
            timeout = f" within {self._read_timeout:g} s" if self._read_timeout else ""
            raise EndpointTimeout(f"The model endpoint did not answer{timeout}") from error
        except BotoCoreError as error:
            logger.warning("InvokeEndpoint failed", extra={"target_model": target_model, "error": str(error)})
            raise EndpointUnavailable("The model endpoint could not be reached") from error
        return parse_predictions(payload)


def _client_error(error: ClientError, target_model: str) -> Exception:
    response = error.response
    code = str(response.get("Error", {}).get("Code", ""))
    message = str(response.get("Error", {}).get("Message", "")) or str(error)
    status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0)
    if code == "ModelError":
        original = response.get("OriginalMessage") or message
        original_status = response.get("OriginalStatusCode")
        return ModelInvocationError(str(original), int(str(original_status)) if original_status is not None else None)
    if code in _BUSY_CODES or status in _BUSY_STATUSES:
        return EndpointBusy(f"The model endpoint is busy: {message}", DEFAULT_RETRY_AFTER_SECONDS)
    # Inputs were validated before the call, so a ValidationError here means our side is wrong:
    # a live version whose artifact is missing, or a misconfigured endpoint name. Never the client's fault.
    logger.error(
        "InvokeEndpoint rejected by SageMaker",
        extra={"code": code, "status": status, "target_model": target_model, "error": message},
    )
    return EndpointUnavailable(f"The model endpoint failed ({code or status}): {message}")
