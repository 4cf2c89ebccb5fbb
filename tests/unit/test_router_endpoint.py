"""SageMakerEndpoint with botocore's Stubber (no sockets): exact request, response parsing, error mapping."""

from __future__ import annotations

import io
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.exceptions import ConnectTimeoutError, EndpointConnectionError, ReadTimeoutError
from botocore.response import StreamingBody
from botocore.stub import Stubber

from house_prices.errors import EndpointBusy, EndpointTimeout, EndpointUnavailable, ModelInvocationError
from router.adapters.endpoint import SageMakerEndpoint, parse_predictions
from router.settings import RouterSettings
from router.wiring import build_candidate_endpoint, registry_client, runtime_client
from tests.router_doubles import add_model_error

TARGET = "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz"
CSV_BODY = "2005,3100,4,2.5,1.1,2\n1990,2200,3,2.0,0.75,1\n"
SETTINGS = RouterSettings(
    endpoint_name="house-prices-mme",
    registry_table="registry",
    endpoint_connect_timeout_seconds=2,
    endpoint_read_timeout_seconds=7,
    endpoint_max_attempts=3,
)


def body(payload: bytes) -> StreamingBody:
    return StreamingBody(io.BytesIO(payload), len(payload))


@pytest.fixture
def stubbed() -> Any:
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    with Stubber(client) as stubber:
        yield SageMakerEndpoint(client, "house-prices-mme", read_timeout_seconds=7), stubber
        stubber.assert_no_pending_responses()


EXPECTED = {
    "EndpointName": "house-prices-mme",
    "TargetModel": TARGET,
    "ContentType": "text/csv",
    "Accept": "application/json",
    "Body": CSV_BODY.encode(),
}


def test_invoke_sends_csv_to_the_target_model_and_parses_json(stubbed: Any) -> None:
    endpoint, stubber = stubbed
    stubber.add_response(
        "invoke_endpoint", {"Body": body(b"[465000.5, 300000]"), "ContentType": "application/json"}, EXPECTED
    )
    assert endpoint.invoke(TARGET, CSV_BODY) == [465000.5, 300000.0]


def test_the_inference_id_is_sent_when_given(stubbed: Any) -> None:
    # Given a call named by its request's first prediction id (a 26-character ULID)
    endpoint, stubber = stubbed
    expected = {**EXPECTED, "InferenceId": "01M9764XR33EMVDJ4VB4ZFX2SK"}
    stubber.add_response("invoke_endpoint", {"Body": body(b"[1, 2]"), "ContentType": "application/json"}, expected)
    # When invoked with it, Then the Stubber saw exactly that InferenceId (and nothing else changed)
    assert endpoint.invoke(TARGET, CSV_BODY, "01M9764XR33EMVDJ4VB4ZFX2SK") == [1.0, 2.0]


def test_the_inference_id_goes_out_as_sagemakers_header() -> None:
    # Given botocore's own serialisation of InvokeEndpoint
    client = boto3.client("sagemaker-runtime", region_name="us-east-1")
    shape = client.meta.service_model.operation_model("InvokeEndpoint").input_shape.members["InferenceId"]
    # Then it is the header the local endpoint reads, and the router's ULIDs fit its constraints
    assert shape.serialization == {"location": "header", "name": "X-Amzn-SageMaker-Inference-Id"}
    assert (shape.metadata["min"], shape.metadata["max"]) == (1, 64)
    assert shape.metadata["pattern"] == "\\A\\S[\\p{Print}]*\\z"


def test_model_error_carries_the_original_message_and_status(stubbed: Any) -> None:
    endpoint, stubber = stubbed
    add_model_error(stubber, 400, "could not convert string to float", EXPECTED)
    with pytest.raises(ModelInvocationError) as caught:
        endpoint.invoke(TARGET, CSV_BODY)
    assert (caught.value.message, caught.value.original_status) == ("could not convert string to float", 400)


@pytest.mark.parametrize(
    ("code", "status"),
    [("ModelNotReadyException", 429), ("ThrottlingException", 400), ("ServiceUnavailable", 503), ("Other", 429)],
)
def test_not_ready_and_throttling_are_busy(stubbed: Any, code: str, status: int) -> None:
    endpoint, stubber = stubbed
    stubber.add_client_error(
        "invoke_endpoint", service_error_code=code, service_message="later", http_status_code=status
    )
    with pytest.raises(EndpointBusy) as caught:
        endpoint.invoke(TARGET, CSV_BODY)
    assert caught.value.retry_after_seconds >= 1


@pytest.mark.parametrize(
    ("code", "status", "message"),
    [
        ("ValidationError", 400, "Failed to download model data(bucket: b, key: k/Chicago_IL.x.tar.gz)"),
        ("ValidationError", 400, "Endpoint house-prices-mme of account 123456789012 not found."),
        ("InternalFailure", 500, "An internal failure"),
    ],
)
def test_our_side_failures_are_unavailable(stubbed: Any, code: str, status: int, message: str) -> None:
    endpoint, stubber = stubbed
    stubber.add_client_error(
        "invoke_endpoint", service_error_code=code, service_message=message, http_status_code=status
    )
    with pytest.raises(EndpointUnavailable, match=code):
        endpoint.invoke(TARGET, CSV_BODY)


@pytest.mark.parametrize(
    "payload", [b"not json", b'{"predictions": [1]}', b'[1, "2"]', b"[1, NaN]", b"[true]", b"\xff", b"[[1.0]]"]
)
def test_unexpected_model_output_is_a_model_error(payload: bytes) -> None:
    with pytest.raises(ModelInvocationError):
        parse_predictions(payload)


class RaisingClient:
    def __init__(self, error: Exception) -> None:
        self.error = error

    def invoke_endpoint(self, **_: Any) -> Any:
        raise self.error


@pytest.mark.parametrize(
    ("error", "expected"),
    [
        (ReadTimeoutError(endpoint_url="http://x"), EndpointTimeout),
        (ConnectTimeoutError(endpoint_url="http://x"), EndpointTimeout),
        (EndpointConnectionError(endpoint_url="http://x"), EndpointUnavailable),
    ],
)
def test_transport_errors(error: Exception, expected: type[Exception]) -> None:
    endpoint = SageMakerEndpoint(RaisingClient(error), "house-prices-mme", read_timeout_seconds=7)
    with pytest.raises(expected):
        endpoint.invoke(TARGET, CSV_BODY)


def test_client_is_configured_from_settings_and_honours_the_endpoint_url_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given the standard per-service endpoint variable (how the local stack redirects the client)
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", "http://127.0.0.1:18080")
    # When the client is created from settings
    client = runtime_client(SETTINGS)
    # Then it targets that URL with the configured timeouts and retries
    config = client.meta.config
    assert client.meta.endpoint_url == "http://127.0.0.1:18080"
    assert (config.connect_timeout, config.read_timeout) == (2, 7)
    assert config.retries == {"total_max_attempts": 3, "mode": "standard"}


def test_registry_client_has_bounded_timeouts_and_honours_its_endpoint_variable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Given settings with registry limits and the local stack's DynamoDB endpoint variable
    monkeypatch.setenv("AWS_ENDPOINT_URL_DYNAMODB", "http://127.0.0.1:18081")
    settings = replace(SETTINGS, registry_connect_timeout_seconds=2, registry_read_timeout_seconds=3)
    # When the registry's client is created / Then botocore's 60 s defaults are replaced
    config = registry_client(settings).meta.config
    assert registry_client(settings).meta.endpoint_url == "http://127.0.0.1:18081"
    assert (config.connect_timeout, config.read_timeout) == (2, 3)
    assert config.retries == {"total_max_attempts": 2, "mode": "standard"}


def test_without_the_variable_the_regional_endpoint_is_used() -> None:
    client = runtime_client(SETTINGS)
    assert client.meta.endpoint_url == "https://runtime.sagemaker.us-east-1.amazonaws.com"


def test_the_candidate_client_makes_one_attempt_with_the_endpoints_timeouts() -> None:
    # A rollout's candidate is never retried: its houses fall back to the live version instead
    candidate = build_candidate_endpoint(SETTINGS)
    config = candidate.client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2, 7)
    assert config.retries == {"total_max_attempts": 1, "mode": "standard"}
    assert candidate.endpoint_name == SETTINGS.endpoint_name
