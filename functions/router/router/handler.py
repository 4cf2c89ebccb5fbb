"""Lambda entry point of the HTTP API: routing and decorators only; the work is in ``router.logic``."""

from __future__ import annotations

from functools import cache
from typing import Any

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, CORSConfig, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from house_prices.observability import logger, metrics, tracer
from router import http_errors, wiring
from router.feedback import FeedbackService
from router.logic import RouterService
from router.settings import RouterSettings

PREDICTIONS = "/locations/<city>/predictions"
LOCATION = "/locations/<city>"
LOCATIONS = "/locations"
HEALTH = "/health"
OPENAPI = "/openapi.json"
FEEDBACK = "/feedback"
ROUTES: dict[str, tuple[str, ...]] = {
    PREDICTIONS: ("POST",),
    LOCATION: ("GET",),
    LOCATIONS: ("GET",),
    HEALTH: ("GET",),
    OPENAPI: ("GET",),
    FEEDBACK: ("POST",),
}

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


@app.post(PREDICTIONS)
def predict(city: str) -> dict[str, Any]:
    event = app.current_event
    return service().predict(
        city,
        event.body,
        _query("version"),
        bool(event.is_base64_encoded),
        request_id=event.request_context.request_id or "",
    )


@app.post(FEEDBACK)
def feedback() -> Response:
    event = app.current_event
    accepted = feedback_service().accept(event.body, bool(event.is_base64_encoded))
    return Response(status_code=202, content_type=content_types.APPLICATION_JSON, body=accepted)


@app.get(LOCATION)
def describe_location(city: str) -> dict[str, Any]:
    return service().describe_location(city)


@app.get(LOCATIONS)
def list_locations() -> dict[str, Any]:
    return service().list_locations()


@app.get(HEALTH)
def health() -> dict[str, Any]:
    return service().health(deep=_query("deep") in {"1", "true"})


@app.get(OPENAPI)
def openapi() -> dict[str, Any]:
    return service().openapi()


def _query(name: str) -> str | None:
    return app.current_event.query_string_parameters.get(name)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@tracer.capture_lambda_handler
@metrics.log_metrics(capture_cold_start_metric=True)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
