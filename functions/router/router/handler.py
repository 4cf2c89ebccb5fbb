"""Lambda entry point of the HTTP API: routing and decorators only; the work is in ``router.logic``."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from house_prices import http_api
from house_prices.observability import logger, metrics, tracer
from router import http_errors, wiring
from router.feedback import FeedbackService
from router.logic import RouterService
from router.settings import RouterSettings

# The paths and methods of house_prices.http_api.ROUTES, in the resolver's syntax (its one table).
ROUTES = http_api.methods_by_resolver_path()

# Any origin may read responses (browser callers still need SigV4 when AuthType is AWS_IAM). On AWS
# the HttpApi's CorsConfiguration answers OPTIONS preflights before they reach this function.
app = APIGatewayHttpResolver(cors=CORSConfig(allow_origin="*", max_age=300))
http_errors.install(app, ROUTES)


@cache
def service() -> RouterService:
    """Built on the first request, then reused by the warm container (clients, registry cache)."""
    return wiring.build_service(RouterSettings.from_env())


@cache
def feedback_service() -> FeedbackService:
    return wiring.build_feedback(RouterSettings.from_env())


def predict(city: str) -> dict[str, Any]:
    event = app.current_event
    return service().predict(
        city,
        event.body,
        _query("version"),
        bool(event.is_base64_encoded),
        request_id=event.request_context.request_id or "",
    )


def feedback() -> Response:
    event = app.current_event
    accepted = feedback_service().accept(event.body, bool(event.is_base64_encoded))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


def describe_location(city: str) -> dict[str, Any]:
    return service().describe_location(city)


def list_locations() -> dict[str, Any]:
    return service().list_locations()


def health() -> dict[str, Any]:
    return service().health(deep=_query("deep") in {"1", "true"})


def openapi() -> dict[str, Any]:
    return service().openapi()


# Every route of the table has its handler here (a KeyError at import otherwise), registered once.
HANDLERS: dict[http_api.Route, Callable[..., Any]] = {
    http_api.PREDICTIONS: predict,
    http_api.LOCATIONS: list_locations,
    http_api.LOCATION: describe_location,
    http_api.HEALTH: health,
    http_api.OPENAPI: openapi,
    http_api.FEEDBACK: feedback,
}
for _route in http_api.ROUTES:
    app.route(_route.resolver_path, method=_route.method)(HANDLERS[_route])


def _query(name: str) -> str | None:
    return app.current_event.query_string_parameters.get(name)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
