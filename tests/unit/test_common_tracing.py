"""house_prices.tracing: the X-Ray documents Powertools' decorators and traced boto3 clients produce (no sockets)."""

from __future__ import annotations

import json
from typing import Any

import boto3
import pytest
from aws_lambda_powertools import Tracer
from botocore.stub import Stubber

from house_prices.tracing import (
    MAX_DOCUMENT_BYTES,
    XRayDaemonProvider,
    daemon_address,
    parse_trace_header,
    trace_aws_calls,
)

ROOT = "1-67a1b2c3-0123456789abcdef01234567"
PARENT = "53995c3f42cd8ad8"
SAMPLED = {"_X_AMZN_TRACE_ID": f"Root={ROOT};Parent={PARENT};Sampled=1", "AWS_XRAY_DAEMON_ADDRESS": "127.0.0.1:2000"}


class Daemon:
    """Collects what the provider would send over UDP."""

    def __init__(self) -> None:
        self.datagrams: list[bytes] = []

    def __call__(self, datagram: bytes) -> None:
        self.datagrams.append(datagram)

    @property
    def documents(self) -> list[dict[str, Any]]:
        documents = []
        for datagram in self.datagrams:
            header, _, body = datagram.partition(b"\n")
            assert json.loads(header) == {"format": "json", "version": 1}
            documents.append(json.loads(body))
        return documents


def tracer_with(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], daemon: Daemon
) -> tuple[Tracer, XRayDaemonProvider]:
    # Tracer keeps its configuration on the class: give this test its own copy.
    monkeypatch.setattr(Tracer, "_config", dict(Tracer._config))
    provider = XRayDaemonProvider(environ=environ, send=daemon)
    return Tracer(service="router", provider=provider, disabled=False, auto_patch=False), provider


@pytest.fixture
def daemon() -> Daemon:
    return Daemon()


@pytest.fixture
def sampled(monkeypatch: pytest.MonkeyPatch, daemon: Daemon) -> tuple[Tracer, XRayDaemonProvider]:
    """A tracer and its provider inside a sampled invocation, sending to ``daemon``."""
    return tracer_with(monkeypatch, SAMPLED, daemon)


def test_nested_captures_become_independent_subsegments_of_the_function_segment(
    sampled: tuple[Tracer, XRayDaemonProvider], daemon: Daemon
) -> None:
    tracer, _ = sampled

    @tracer.capture_method
    def inner() -> dict[str, int]:
        tracer.put_annotation("city_count", 1)
        return {"answer": 42}

    @tracer.capture_method
    def outer() -> dict[str, int]:
        return inner()

    # Given a sampled invocation / When a traced method calls another
    assert outer() == {"answer": 42}
    # Then each closes into its own document: inner under outer, outer under the function segment
    first, second = daemon.documents
    assert (first["name"].rsplit(".", 1)[-1], second["name"].rsplit(".", 1)[-1]) == ("inner", "outer")
    assert first["name"].startswith("## ")
    assert {first["trace_id"], second["trace_id"]} == {ROOT}
    assert (first["parent_id"], second["parent_id"]) == (second["id"], PARENT)
    assert first["type"] == second["type"] == "subsegment"
    assert first["annotations"] == {"city_count": 1}
    [(key, value)] = first["metadata"]["router"].items()
    assert (key.endswith("inner response"), value) == (True, {"answer": 42})
    assert first["start_time"] <= first["end_time"] <= second["end_time"]
    assert len({first["id"], second["id"]}) == 2
    assert all(len(document["id"]) == 16 for document in (first, second))


def test_an_exception_is_recorded_as_a_fault_and_still_raised(
    sampled: tuple[Tracer, XRayDaemonProvider], daemon: Daemon
) -> None:
    tracer, _ = sampled

    @tracer.capture_method
    def broken() -> None:
        raise ValueError("boom")

    with pytest.raises(ValueError, match="boom"):
        broken()
    [document] = daemon.documents
    assert document["fault"] is True
    [exception] = document["cause"]["exceptions"]
    assert (exception["type"], exception["message"]) == ("ValueError", "boom")
    assert exception["stack"][-1]["label"] == "broken"


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {**SAMPLED, "_X_AMZN_TRACE_ID": f"Root={ROOT};Parent={PARENT};Sampled=0"},
        {**SAMPLED, "POWERTOOLS_TRACE_DISABLED": "true"},
        {**SAMPLED, "_X_AMZN_TRACE_ID": f"Root={ROOT};Sampled=1"},
    ],
    ids=["no-trace", "not-sampled", "disabled", "no-parent"],
)
def test_nothing_is_sent_without_a_sampled_trace(
    monkeypatch: pytest.MonkeyPatch, environ: dict[str, str], daemon: Daemon
) -> None:
    tracer, _ = tracer_with(monkeypatch, environ, daemon)

    @tracer.capture_method
    def work() -> int:
        tracer.put_metadata("k", "v")
        return 1

    assert work() == 1
    assert daemon.datagrams == []


def test_a_document_too_large_for_one_datagram_loses_its_metadata_not_its_timing(
    sampled: tuple[Tracer, XRayDaemonProvider], daemon: Daemon
) -> None:
    tracer, _ = sampled

    @tracer.capture_method
    def big() -> str:
        return "x" * (2 * MAX_DOCUMENT_BYTES)

    big()
    [datagram] = daemon.datagrams
    assert len(datagram) < MAX_DOCUMENT_BYTES
    assert "truncated" in daemon.documents[0]["metadata"]["house_prices"]


def test_a_failing_send_never_reaches_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    def unreachable(_: bytes) -> None:
        raise OSError("network is unreachable")

    monkeypatch.setattr(Tracer, "_config", dict(Tracer._config))
    provider = XRayDaemonProvider(environ=SAMPLED, send=unreachable)
    tracer = Tracer(provider=provider, disabled=False, auto_patch=False)
    assert tracer.capture_method(lambda: 7)() == 7


def test_traced_client_calls_become_aws_subsegments(sampled: tuple[Tracer, XRayDaemonProvider], daemon: Daemon) -> None:
    _, provider = sampled
    client = trace_aws_calls(boto3.client("dynamodb", region_name="eu-west-1"), provider)
    with Stubber(client) as stub:
        stub.add_response("get_item", {"ResponseMetadata": {"RequestId": "REQ1", "HTTPStatusCode": 200}})
        stub.add_client_error("get_item", "ResourceNotFoundException", "no table", http_status_code=400)
        # When one call succeeds and one is refused
        client.get_item(TableName="registry", Key={"city": {"S": "Chicago_IL"}})
        with pytest.raises(client.exceptions.ResourceNotFoundException):
            client.get_item(TableName="registry", Key={"city": {"S": "Chicago_IL"}})
    # Then each is an "aws" subsegment named after the service, under the function segment
    ok, refused = daemon.documents
    assert (ok["name"], ok["namespace"], ok["parent_id"], ok["trace_id"]) == ("DynamoDB", "aws", PARENT, ROOT)
    assert ok["aws"] == {
        "operation": "GetItem",
        "region": "eu-west-1",
        "table_name": "registry",
        "request_id": "REQ1",
    }
    assert ok["http"] == {"response": {"status": 200}}
    assert "error" not in ok
    assert "fault" not in ok
    assert (refused["http"], refused["error"]) == ({"response": {"status": 400}}, True)


def test_clients_are_left_alone_for_other_providers() -> None:
    client = boto3.client("dynamodb", region_name="us-east-1")
    assert trace_aws_calls(client, object()) is client  # type: ignore[arg-type]


def test_trace_header_and_daemon_address_parsing() -> None:
    assert parse_trace_header(f"Root={ROOT};Parent={PARENT};Sampled=1;Lineage=a:1") == {
        "Root": ROOT,
        "Parent": PARENT,
        "Sampled": "1",
        "Lineage": "a:1",
    }
    assert daemon_address("169.254.79.129:2000") == ("169.254.79.129", 2000)
    assert daemon_address("tcp:127.0.0.1:2000 udp:127.0.0.2:2001") == ("127.0.0.2", 2001)
    assert daemon_address("") is None
    assert daemon_address("nonsense") is None
