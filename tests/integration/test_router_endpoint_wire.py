"""SageMakerEndpoint over a real socket against a tiny server speaking InvokeEndpoint's wire protocol.

Proves what Stubber cannot: botocore really parses ModelError's OriginalMessage where the adapter reads it,
AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME redirects the ordinary client, and timeouts/retries come from settings.
"""

from __future__ import annotations

import json
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from house_prices.errors import EndpointBusy, EndpointTimeout, EndpointUnavailable, ModelInvocationError
from router import wiring
from router.adapters.endpoint import SageMakerEndpoint
from router.settings import RouterSettings

ENDPOINT = "house-prices-mme"
CSV_BODY = "2005,3100,4,2.5,1.1,2\n1990,2200,3,2.0,0.75,1\n"


class WireServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, port: int) -> None:
        super().__init__(("127.0.0.1", port), _Handler)
        self.requests: list[dict[str, Any]] = []

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The read-timeout test hangs up before the slow answer is written: that is its point, not an error.
        if not isinstance(sys.exc_info()[1], BrokenPipeError | ConnectionResetError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    server: WireServer

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        target = self.headers.get("X-Amzn-SageMaker-Target-Model", "")
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "body": body})
        if target.startswith("Chicago_IL."):
            rows = body.decode().splitlines()
            self._send(
                200, [100000.0 + i for i in range(len(rows))], {"x-Amzn-Invoked-Production-Variant": "AllTraffic"}
            )
        elif target == "model-error":
            self._error(
                424,
                "ModelError",
                {
                    "Message": 'Received client error (400) from primary with message "could not convert"',
                    "OriginalStatusCode": 400,
                    "OriginalMessage": "could not convert string to float: 'abc'",
                    "LogStreamArn": "arn:aws:logs:us-east-1:123456789012:log-group:/aws/sagemaker/Endpoints/x",
                },
            )
        elif target == "not-ready":
            self._error(429, "ModelNotReadyException", {"message": "Model not ready yet"})
        elif target == "unavailable":
            self._error(503, "ServiceUnavailable", {"message": "try later"})
        elif target == "missing":
            self._error(400, "ValidationError", {"message": "Failed to download model data(bucket: b, key: k)"})
        elif target == "slow":
            time.sleep(2.5)
            self._send(200, [1.0, 2.0], {})

    def _send(self, status: int, payload: Any, headers: dict[str, str]) -> None:
        raw = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(raw)))
        self.send_header("x-amzn-RequestId", "11111111-2222-3333-4444-555555555555")
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(raw)

    def _error(self, status: int, code: str, payload: dict[str, Any]) -> None:
        self._send(status, payload, {"x-amzn-ErrorType": code})

    def log_message(self, *_: Any) -> None:
        return None


@pytest.fixture
def server() -> Iterator[WireServer]:
    wire = WireServer(0)
    thread = threading.Thread(target=wire.serve_forever, daemon=True)
    thread.start()
    yield wire
    wire.shutdown()
    wire.server_close()
    thread.join(timeout=5)


def endpoint(monkeypatch: pytest.MonkeyPatch, server: WireServer, **overrides: int) -> SageMakerEndpoint:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", f"http://127.0.0.1:{server.server_address[1]}")
    settings = RouterSettings(endpoint_name=ENDPOINT, registry_table="unused", **overrides)
    return wiring.build_endpoint(settings)


def test_invocation_reaches_the_endpoint_named_by_the_environment(
    monkeypatch: pytest.MonkeyPatch, server: WireServer
) -> None:
    # Given the ordinary client pointed at the local endpoint by AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
    adapter = endpoint(monkeypatch, server)
    # When two rows are invoked
    prices = adapter.invoke("Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz", CSV_BODY)
    # Then the wire request is InvokeEndpoint's, and one price per row comes back
    assert prices == [100000.0, 100001.0]
    [seen] = server.requests
    assert seen["path"] == f"/endpoints/{ENDPOINT}/invocations"
    assert seen["headers"]["Content-Type"] == "text/csv"
    assert seen["headers"]["Accept"] == "application/json"
    assert seen["headers"]["X-Amzn-SageMaker-Target-Model"] == "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz"
    assert seen["body"] == CSV_BODY.encode()


def test_model_error_is_parsed_from_the_wire(monkeypatch: pytest.MonkeyPatch, server: WireServer) -> None:
    with pytest.raises(ModelInvocationError) as caught:
        endpoint(monkeypatch, server).invoke("model-error", CSV_BODY)
    assert (caught.value.message, caught.value.original_status) == ("could not convert string to float: 'abc'", 400)
    assert len(server.requests) == 1  # botocore never retries ModelError


def test_not_ready_is_busy_at_once(monkeypatch: pytest.MonkeyPatch, server: WireServer) -> None:
    # botocore's standard mode does not retry ModelNotReadyException: it is not modeled retryable and
    # 429 is not a transient status there. The client gets 503 + Retry-After instead.
    with pytest.raises(EndpointBusy):
        endpoint(monkeypatch, server, endpoint_max_attempts=3).invoke("not-ready", CSV_BODY)
    assert len(server.requests) == 1


def test_service_unavailable_is_retried_up_to_the_total_attempts(
    monkeypatch: pytest.MonkeyPatch, server: WireServer
) -> None:
    with pytest.raises(EndpointBusy):
        endpoint(monkeypatch, server, endpoint_max_attempts=2).invoke("unavailable", CSV_BODY)
    assert len(server.requests) == 2


def test_missing_artifact_is_unavailable_and_not_retried(monkeypatch: pytest.MonkeyPatch, server: WireServer) -> None:
    with pytest.raises(EndpointUnavailable, match="Failed to download model data"):
        endpoint(monkeypatch, server).invoke("missing", CSV_BODY)
    assert len(server.requests) == 1


def test_read_timeout_comes_from_settings(monkeypatch: pytest.MonkeyPatch, server: WireServer) -> None:
    adapter = endpoint(monkeypatch, server, endpoint_read_timeout_seconds=1, endpoint_max_attempts=1)
    started = time.monotonic()
    with pytest.raises(EndpointTimeout, match="within 1 s"):
        adapter.invoke("slow", CSV_BODY)
    assert 0.9 < time.monotonic() - started < 2.4


def test_nothing_listening_is_unavailable(monkeypatch: pytest.MonkeyPatch, free_port: int) -> None:
    monkeypatch.setenv("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", f"http://127.0.0.1:{free_port}")
    adapter = wiring.build_endpoint(
        RouterSettings(endpoint_name=ENDPOINT, registry_table="unused", endpoint_max_attempts=1)
    )
    with pytest.raises(EndpointUnavailable):
        adapter.invoke("Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz", CSV_BODY)
