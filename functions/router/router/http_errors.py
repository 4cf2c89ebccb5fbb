"""The one place that turns failures into HTTP responses.

Every error body is ``{"message": str, "errors": [{"field": str, "problem": str}]}``. Client mistakes
are 4xx; only our own or our dependencies' failures are 5xx. Status choices:

* every ``InvalidInput`` (malformed JSON, wrong type, out of range, unknown field) is **400**: the
  domain errors carry no syntactic/semantic split and a client would not act on one, so 422 is unused;
* 5xx bodies carry our own fixed text: what the endpoint or the model said (tracebacks, bucket names,
  file paths) goes to the logs only;
* ``EndpointUnavailable`` is 502 (the endpoint answered wrongly or not at all — e.g. a live version whose
  artifact is missing is our fault, not the caller's); ``DependencyFailure`` (DynamoDB) is 503 + Retry-After.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response, content_types
from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from aws_lambda_powertools.metrics import single_metric

from house_prices.errors import (
    DependencyFailure,
    DomainError,
    EndpointBusy,
    EndpointTimeout,
    EndpointUnavailable,
    FieldProblem,
    InvalidInput,
    ModelInvocationError,
    NotFound,
    PayloadTooLarge,
)
from house_prices.observability import MetricUnit, logger, metrics
from house_prices.settings import SettingsError

# A hostile body can carry thousands of unknown keys; the error echo must stay far below Lambda's
# 6 MB response limit, or the client's mistake would turn into our 5xx.
MAX_REPORTED_PROBLEMS = 50
MAX_TEXT_CHARS = 256
ERROR_METRIC = "RequestErrors"
# API Gateway's own text for a request without a route (its whole body is {"message":"Not Found"}).
ROUTE_NOT_FOUND = "Not Found"


@dataclass(frozen=True)
class HttpError:
    status: int
    message: str
    problems: tuple[FieldProblem, ...]
    kind: str
    headers: Mapping[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, Any]:
        shown = [{"field": _clip(p.field), "problem": _clip(p.problem)} for p in self.problems[:MAX_REPORTED_PROBLEMS]]
        hidden = len(self.problems) - len(shown)
        if hidden > 0:
            shown.append({"field": "body", "problem": f"{hidden} more problems not shown"})
        return {"message": _clip(self.message), "errors": shown}

    def response(self) -> Response:
        return Response(
            status_code=self.status,
            content_type=content_types.APPLICATION_JSON,
            body=self.body(),
            headers=dict(self.headers),
        )


def _client_error(status: int) -> Callable[[Any], HttpError]:
    """A client mistake: its own message and field problems, as raised."""
    return lambda error: HttpError(status, error.message, tuple(error.problems), type(error).__name__)


def _model_failed(error: ModelInvocationError) -> HttpError:
    # The model's own text can be a Python traceback naming server paths: logs only, never the caller.
    status = f" (model status {error.original_status})" if error.original_status is not None else ""
    problem = f"the model failed on this request{status}; the operator has been told through the logs"
    return HttpError(502, "The model failed to predict", (FieldProblem("model", problem),), type(error).__name__)


def _endpoint_busy(error: EndpointBusy) -> HttpError:
    return HttpError(
        503,
        "The model is not ready or is throttled; retry later",
        (FieldProblem("model", "the model is loading or the endpoint is throttled"),),
        type(error).__name__,
        {"Retry-After": str(max(1, error.retry_after_seconds))},
    )


def _endpoint_timeout(error: EndpointTimeout) -> HttpError:
    return HttpError(
        504, "The model did not answer in time", (FieldProblem("model", error.message),), "EndpointTimeout"
    )


def _endpoint_unavailable(error: EndpointUnavailable) -> HttpError:
    # SageMaker's own text can name buckets and accounts: it goes to the logs, not to the caller.
    problem = "the model endpoint failed; the operator has been told through the logs"
    return HttpError(502, "The model endpoint failed", (FieldProblem("model", problem),), type(error).__name__)


def _registry_unavailable(error: DependencyFailure) -> HttpError:
    return HttpError(
        503,
        "The model registry is unavailable; retry later",
        (FieldProblem("registry", "temporarily unavailable"),),
        type(error).__name__,
        {"Retry-After": "1"},
    )


def _misconfigured(error: SettingsError) -> HttpError:
    return HttpError(500, "The router is misconfigured", tuple(error.problems), type(error).__name__)


# The one map of failures to responses, looked up along the exception's class hierarchy (most specific
# class first), as Starlette's exception handlers are: a subclass answers as its nearest mapped ancestor.
HTTP_ERRORS: dict[type[BaseException], Callable[[Any], HttpError]] = {
    PayloadTooLarge: _client_error(413),
    InvalidInput: _client_error(400),
    NotFound: _client_error(404),
    ModelInvocationError: _model_failed,
    EndpointBusy: _endpoint_busy,
    EndpointTimeout: _endpoint_timeout,
    EndpointUnavailable: _endpoint_unavailable,
    DependencyFailure: _registry_unavailable,
    SettingsError: _misconfigured,
}


def http_error_for(error: BaseException, request_id: str = "") -> HttpError:
    """Map any exception to its HTTP error. Pure: no logging, no metrics."""
    for cls in type(error).__mro__:
        if (build := HTTP_ERRORS.get(cls)) is not None:
            return build(error)
    reference = f"; request id {request_id}" if request_id else ""
    return HttpError(
        500,
        "Internal server error",
        (FieldProblem("request", f"unexpected failure{reference}"),),
        type(error).__name__ if isinstance(error, DomainError) else "Unexpected",
    )


def route_not_found(method: str, path: str, routes: Mapping[str, Sequence[str]]) -> HttpError:
    """404 ``Not Found`` for a method and path without a route, whatever the method.

    The same status and ``message`` as API Gateway's own ``{"message":"Not Found"}``, which answers such
    requests before they reach this function: an HTTP API with explicit routes has no 405, a known path
    with another method is just another missing route. ``errors`` names what does exist.
    """
    matching = [methods for template, methods in routes.items() if _template_regex(template).fullmatch(path)]
    allowed = sorted({m for methods in matching for m in methods})
    if allowed:
        problem = f"no route {method} {path}; that path takes {', '.join(allowed)}"
        return HttpError(404, ROUTE_NOT_FOUND, (FieldProblem("method", problem),), "RouteNotFound")
    known = ", ".join(f"{'|'.join(ms)} {template}" for template, ms in routes.items())
    problem = f"no route {method} {path}; routes: {known}"
    return HttpError(404, ROUTE_NOT_FOUND, (FieldProblem("path", problem),), "RouteNotFound")


def install(app: APIGatewayHttpResolver, routes: Mapping[str, Sequence[str]]) -> None:
    """Register the error handlers on ``app``; ``routes`` maps each path template to its methods."""

    @app.not_found
    def _not_found(_: NotFoundError) -> Response:
        event = app.current_event
        return _respond(route_not_found(event.http_method.upper(), event.path, routes))

    @app.exception_handler(Exception)
    def _any_error(error: Exception) -> Response:
        request_id = app.current_event.request_context.request_id or ""
        mapped = http_error_for(error, request_id)
        if mapped.status >= 500 and mapped.kind in {"Unexpected", "SettingsError"}:
            logger.exception("Unhandled error", extra={"kind": type(error).__name__})
        elif mapped.status >= 500:
            logger.error("Dependency failure", extra={"kind": mapped.kind, "error": str(error)})
        else:
            logger.info("Request rejected", extra={"status": mapped.status, "kind": mapped.kind})
        return _respond(mapped)


def _respond(mapped: HttpError) -> Response:
    _count_error(mapped.kind)
    return mapped.response()


def _count_error(kind: str) -> None:
    """One EMF blob per error with ``kind`` as its only dimension (the batch's dimensions stay clean)."""
    try:
        with single_metric(name=ERROR_METRIC, unit=MetricUnit.Count, value=1, namespace=metrics.namespace) as metric:
            metric.add_dimension(name="kind", value=kind)
    except Exception:  # telemetry must never turn a response into a 500
        logger.warning("Could not emit the error metric", exc_info=True)


def _template_regex(template: str) -> re.Pattern[str]:
    # Path parameters never span a "/" (API Gateway matches them segment by segment).
    return re.compile(re.sub(r"<\w+>", "[^/]+", re.escape(template)))


def _clip(text: str) -> str:
    return text if len(text) <= MAX_TEXT_CHARS else f"{text[:MAX_TEXT_CHARS]}… ({len(text)} chars)"
