"""X-Ray traces without the X-Ray SDK: a Powertools tracing provider that talks to the daemon directly.

Why: importing ``aws_xray_sdk`` cost the router ~135 ms of its cold start (more than half of it),
mostly building a botocore client for sampling rules that Lambda never uses (Lambda samples; the
function only sees the decision in ``_X_AMZN_TRACE_ID``). The SDK is in maintenance mode, and
OpenTelemetry measured no lighter (~105 ms for its SDK, exporter and botocore instrumentation, plus a
collector extension). In Lambda the SDK itself does little more than this module: for each
subsegment it sends one JSON document over UDP to the daemon the runtime runs at
``AWS_XRAY_DAEMON_ADDRESS``, with the invocation's trace id and the function segment as parent
(https://docs.aws.amazon.com/xray/latest/devguide/xray-api-sendingdata.html, "independent subsegments").

* ``Tracer(provider=XRayDaemonProvider())`` keeps every Powertools decorator
  (``capture_lambda_handler``, ``capture_method``), annotations and metadata as they were;
* ``trace_aws_calls(client)`` gives each boto3 call its own ``aws`` subsegment (service, operation,
  region, request id, HTTP status), as the SDK's botocore patch did, so the service map still shows
  DynamoDB, S3 and SageMaker Runtime under each function.

With no sampled trace (tests, the local stack, ``POWERTOOLS_TRACE_DISABLED``, an unsampled request)
every call is a no-op. Tracing never raises into the request: a document that cannot be sent is dropped.
Standard library plus Powertools' provider interface only.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from contextlib import asynccontextmanager, contextmanager
from contextvars import ContextVar
from typing import Any

from aws_lambda_powertools.tracing.base import BaseProvider, BaseSegment

from house_prices.settings import process_environ

TRACE_HEADER_VARIABLE = "_X_AMZN_TRACE_ID"  # set by the Lambda runtime for each invocation
DAEMON_ADDRESS_VARIABLE = "AWS_XRAY_DAEMON_ADDRESS"
DISABLED_VARIABLE = "POWERTOOLS_TRACE_DISABLED"
_PROTOCOL_HEADER = b'{"format": "json", "version": 1}\n'
# The daemon takes one UDP datagram per document (64 KiB); captured responses can be larger.
MAX_DOCUMENT_BYTES = 62 * 1024
_MAX_STACK_FRAMES = 20

Send = Callable[[bytes], None]


def parse_trace_header(header: str) -> dict[str, str]:
    """``Root=1-…;Parent=…;Sampled=1`` -> {"Root": …, "Parent": …, "Sampled": "1"}."""
    pairs = (part.strip().split("=", 1) for part in header.split(";") if "=" in part)
    return {key: value for key, value in pairs}


def daemon_address(value: str) -> tuple[str, int] | None:
    """``host:port`` or ``tcp:host:port udp:host:port`` (the runtime's two forms) -> the UDP address."""
    for part in value.split():
        if part.startswith("tcp:"):
            continue
        host, _, port = part.removeprefix("udp:").rpartition(":")
        if host and port.isdigit():
            return host, int(port)
    return None


class Subsegment(BaseSegment):
    """One X-Ray subsegment; sent as an independent document when it closes."""

    def __init__(self, name: str, trace_id: str, parent_id: str, namespace: str | None = None) -> None:
        self.name = name
        self.id = os.urandom(8).hex()
        self.trace_id = trace_id
        self.parent_id = parent_id
        self.namespace = namespace
        self.start_time = time.time()
        self.end_time: float | None = None
        self.annotations: dict[str, Any] = {}
        self.metadata: dict[str, dict[str, Any]] = {}
        self.aws: dict[str, Any] = {}
        self.http: dict[str, Any] = {}
        self.fault = False
        self.error = False
        self.exceptions: list[dict[str, Any]] = []

    def close(self, end_time: int | None = None) -> None:
        self.end_time = float(end_time) if end_time is not None else time.time()

    def add_subsegment(self, subsegment: Any) -> None:
        """Children are sent on their own with this id as parent; nothing to keep here."""

    def remove_subsegment(self, subsegment: Any) -> None:
        """See ``add_subsegment``."""

    def put_annotation(self, key: str, value: Any) -> None:
        if isinstance(value, (str, int, float, bool)):
            self.annotations[key] = value

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        self.metadata.setdefault(namespace, {})[key] = value

    def add_exception(self, exception: BaseException, stack: Any = None, remote: bool = False) -> None:
        self.fault = True
        frames = traceback.extract_tb(exception.__traceback__)[-_MAX_STACK_FRAMES:]
        self.exceptions.append(
            {
                "id": os.urandom(8).hex(),
                "type": type(exception).__name__,
                "message": str(exception)[:1024],
                "remote": remote,
                "stack": [{"path": f.filename, "line": f.lineno, "label": f.name} for f in frames],
            }
        )

    def document(self) -> dict[str, Any]:
        document: dict[str, Any] = {
            "name": self.name,
            "id": self.id,
            "trace_id": self.trace_id,
            "parent_id": self.parent_id,
            "type": "subsegment",
            "start_time": self.start_time,
            "end_time": self.end_time if self.end_time is not None else time.time(),
        }
        optional = {
            "namespace": self.namespace,
            "annotations": self.annotations,
            "metadata": self.metadata,
            "aws": self.aws,
            "http": self.http,
            "fault": self.fault,
            "error": self.error,
            "cause": {"exceptions": self.exceptions} if self.exceptions else None,
        }
        document.update({key: value for key, value in optional.items() if value})
        return document


class _NoSubsegment(Subsegment):
    """What callers get when nothing is traced: accepts everything, sends nothing."""

    def __init__(self) -> None:
        super().__init__("", "", "")


class XRayDaemonProvider(BaseProvider):
    """Powertools ``BaseProvider`` that streams subsegments to the Lambda X-Ray daemon."""

    def __init__(self, environ: Mapping[str, str] | None = None, send: Send | None = None) -> None:
        self._environ = process_environ() if environ is None else environ
        self._send = send
        self._socket: socket.socket | None = None
        self._current: ContextVar[Subsegment | None] = ContextVar("house_prices_subsegment", default=None)

    # the active trace, as the runtime describes it for this invocation
    def _trace(self) -> tuple[str, str] | None:
        if self._environ.get(DISABLED_VARIABLE, "").strip().lower() in {"1", "true", "yes", "on"}:
            return None
        header = parse_trace_header(self._environ.get(TRACE_HEADER_VARIABLE, ""))
        if header.get("Sampled") != "1" or not header.get("Root") or not header.get("Parent"):
            return None
        return header["Root"], header["Parent"]

    def begin(self, name: str, namespace: str | None = None) -> Subsegment:
        """Open a subsegment under the current one (or the function's segment); close it with ``end``."""
        parent = self._current.get()
        if parent is not None and not isinstance(parent, _NoSubsegment):
            return Subsegment(name, parent.trace_id, parent.id, namespace)
        trace = self._trace()
        if trace is None:
            return _NoSubsegment()
        return Subsegment(name, trace[0], trace[1], namespace)

    def end(self, subsegment: Subsegment) -> None:
        if isinstance(subsegment, _NoSubsegment):
            return
        subsegment.close()
        self._emit(subsegment.document())

    @contextmanager
    def in_subsegment(self, name: str | None = None, **kwargs: Any) -> Iterator[Subsegment]:
        subsegment = self.begin(name or "subsegment", kwargs.get("namespace"))
        token = self._current.set(subsegment)
        try:
            yield subsegment
        except BaseException as error:
            if not isinstance(subsegment, _NoSubsegment):  # untraced: no traceback walk for a 4xx
                subsegment.add_exception(error)
            raise
        finally:
            self._current.reset(token)
            self.end(subsegment)

    @asynccontextmanager
    async def in_subsegment_async(self, name: str | None = None, **kwargs: Any) -> AsyncIterator[Subsegment]:
        with self.in_subsegment(name, **kwargs) as subsegment:
            yield subsegment

    def put_annotation(self, key: str, value: Any) -> None:
        current = self._current.get()
        if current is not None:
            current.put_annotation(key, value)

    def put_metadata(self, key: str, value: Any, namespace: str = "default") -> None:
        current = self._current.get()
        if current is not None:
            current.put_metadata(key, value, namespace)

    def patch(self, modules: Sequence[str]) -> None:
        """Nothing is patched globally; ``trace_aws_calls`` instruments the clients wiring builds."""

    def patch_all(self) -> None:
        """See ``patch``."""

    # sending
    def _emit(self, document: dict[str, Any]) -> None:
        try:
            payload = json.dumps(document, default=str).encode()
            if len(payload) > MAX_DOCUMENT_BYTES:
                document["metadata"] = {"house_prices": {"truncated": f"metadata dropped: {len(payload)} bytes"}}
                payload = json.dumps(document, default=str).encode()
            (self._send or self._send_udp)(_PROTOCOL_HEADER + payload)
        except Exception:  # a trace must never fail a request
            return

    def _send_udp(self, datagram: bytes) -> None:
        address = daemon_address(self._environ.get(DAEMON_ADDRESS_VARIABLE, ""))
        if address is None:
            return
        if self._socket is None:
            self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            self._socket.setblocking(False)
        self._socket.sendto(datagram, address)


def trace_aws_calls(client: Any, provider: BaseProvider) -> Any:
    """One ``aws`` subsegment per API call of ``client`` (retries included), like the SDK's botocore patch."""
    if not isinstance(provider, XRayDaemonProvider):
        return client
    service = client.meta.service_model.service_id
    region = client.meta.region_name
    key = "house_prices_subsegment"

    def before_parameter_build(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        # The API parameters are only visible here; before-call sees the serialised request.
        if isinstance(params.get("TableName"), str):
            context[f"{key}_table"] = params["TableName"]

    def before_call(model: Any, context: dict[str, Any], **_: Any) -> None:
        subsegment = provider.begin(str(service), namespace="aws")
        subsegment.aws = {"operation": model.name, "region": region}
        if f"{key}_table" in context:
            subsegment.aws["table_name"] = context[f"{key}_table"]
        context[key] = subsegment

    def after_call(http_response: Any, parsed: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        subsegment = context.pop(key, None)
        if subsegment is None:
            return
        status = int(getattr(http_response, "status_code", 0) or 0)
        subsegment.http = {"response": {"status": status}}
        request_id = (parsed.get("ResponseMetadata") or {}).get("RequestId")
        if request_id:
            subsegment.aws["request_id"] = request_id
        subsegment.error = 400 <= status < 500
        subsegment.fault = status >= 500
        provider.end(subsegment)

    def after_call_error(exception: BaseException, context: dict[str, Any], **_: Any) -> None:
        subsegment = context.pop(key, None)
        if subsegment is not None:
            subsegment.add_exception(exception, remote=True)
            provider.end(subsegment)

    events = client.meta.events
    events.register("before-parameter-build.*.*", before_parameter_build)
    # First, so botocore's Stubber (which answers before-call itself) cannot skip the trace in tests.
    events.register_first("before-call.*.*", before_call)
    events.register("after-call.*.*", after_call)
    events.register("after-call-error.*.*", after_call_error)
    return client
