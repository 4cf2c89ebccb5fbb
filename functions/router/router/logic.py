"""What the API does, free of HTTP and of boto3: validate, resolve the model, invoke once, shape the answer."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable
from typing import Any, Protocol

from house_prices import naming, schema
from house_prices.errors import (
    FieldProblem,
    InvalidInput,
    ModelInvocationError,
    NotFound,
    PayloadTooLarge,
    UnknownCity,
)
from house_prices.observability import MetricUnit, logger, metrics, tracer
from house_prices.registry import LiveModel, ModelVersion

JsonObject = dict[str, Any]


class Registry(Protocol):
    def live_model(self, city: str) -> LiveModel: ...
    def version(self, city: str, version: str) -> ModelVersion: ...
    def versions(self, city: str) -> list[ModelVersion]: ...
    def live_models(self) -> list[LiveModel]: ...
    def ping(self) -> None: ...


class Endpoint(Protocol):
    def invoke(self, target_model: str, csv_body: str) -> list[float]: ...


class RouterService:
    def __init__(
        self,
        registry: Registry,
        endpoint: Endpoint,
        max_houses: int = schema.DEFAULT_MAX_HOUSES_PER_REQUEST,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.registry = registry
        self.endpoint = endpoint
        self.max_houses = max_houses
        self._clock = clock

    @tracer.capture_method
    def predict(
        self, city: str, body: str | bytes | None, version: str | None = None, base64_encoded: bool = False
    ) -> JsonObject:
        started = self._clock()
        # Path and query first: nothing is decoded, looked up or built for a name we would refuse.
        naming.validate_city(city)
        if version is not None:
            naming.validate_version(version)
        rows = parse_request_houses(body, base64_encoded, self.max_houses)
        model_version, target = self._resolve(city, version)
        csv_body = schema.rows_to_csv(rows)
        if len(csv_body.encode("utf-8")) > schema.MAX_ENDPOINT_BODY_BYTES:
            raise PayloadTooLarge("houses", f"the batch exceeds the endpoint's {schema.MAX_ENDPOINT_BODY_BYTES} bytes")

        invoked = self._clock()
        prices = self.endpoint.invoke(target, csv_body)
        finished = self._clock()
        if len(prices) != len(rows):
            raise ModelInvocationError(f"The model returned {len(prices)} predictions for {len(rows)} houses")

        metrics.add_metric(name="HousesPerRequest", unit=MetricUnit.Count, value=len(rows))
        metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=(finished - invoked) * 1000)
        metrics.add_metric(name="PredictionLatency", unit=MetricUnit.Milliseconds, value=(finished - started) * 1000)
        # City and version are high-cardinality: metadata and logs only, never a dimension.
        metrics.add_metadata(key="city", value=city)
        metrics.add_metadata(key="version", value=model_version)
        logger.info("Predicted", extra={"city": city, "version": model_version, "houses": len(rows)})
        return {
            "location": city,
            "model": {"version": model_version, "target_model": target},
            "predictions": [{"price": price} for price in prices],
        }

    @tracer.capture_method
    def list_locations(self) -> JsonObject:
        return {
            "locations": [
                {
                    "location": live.city,
                    "version": live.version,
                    "target_model": live.target_model,
                    "promoted_at": live.promoted_at,
                }
                for live in self.registry.live_models()
            ]
        }

    @tracer.capture_method
    def describe_location(self, city: str) -> JsonObject:
        naming.validate_city(city)
        versions = self.registry.versions(city)
        try:
            live: LiveModel | None = self.registry.live_model(city)
        except UnknownCity:
            if not versions:
                raise
            live = None  # every version was rejected: show them, there is nothing to serve
        return {
            "location": city,
            "live": (
                {"version": live.version, "target_model": live.target_model, "promoted_at": live.promoted_at}
                if live
                else None
            ),
            "versions": [v.as_dict() for v in versions],
            "features": schema.describe_features(),
        }

    def health(self, deep: bool = False) -> JsonObject:
        checks = {"settings": "ok"}
        if deep:
            self.registry.ping()
            checks["registry"] = "ok"
        return {"status": "ok", "checks": checks}

    def openapi(self) -> JsonObject:
        """The API's OpenAPI document, with this router's batch limit."""
        return schema.openapi_document(self.max_houses)

    def _resolve(self, city: str, version: str | None) -> tuple[str, str]:
        if version is None:
            live = self.registry.live_model(city)
            return live.version, live.target_model
        pinned = self.registry.version(city, version)
        if pinned.status == "rejected":
            raise NotFound("version", f"{version!r} was rejected and is never served", f"Unservable version: {version}")
        return pinned.version, pinned.target_model


def parse_request_houses(body: str | bytes | None, base64_encoded: bool, max_houses: int) -> list[schema.House]:
    """Raw HTTP body -> validated rows in feature order; every failure names ``body`` or a house field."""
    raw = decode_body(body, base64_encoded)
    if len(raw) > schema.MAX_ENDPOINT_BODY_BYTES:
        raise PayloadTooLarge("body", f"must be at most {schema.MAX_ENDPOINT_BODY_BYTES} bytes, got {len(raw)}")
    if not raw.strip():
        raise InvalidInput([FieldProblem("body", 'is required: a house object or {"houses": [...]}')])
    try:
        payload = json.loads(raw)
    except RecursionError as error:
        raise InvalidInput([FieldProblem("body", "is nested too deeply")]) from error
    except ValueError as error:  # JSONDecodeError, bad UTF-8, integers over Python's 4300-digit limit
        raise InvalidInput([FieldProblem("body", f"must be valid JSON: {error}")]) from error
    return schema.parse_houses(payload, max_houses)


def decode_body(body: str | bytes | None, base64_encoded: bool) -> bytes:
    if body is None:
        return b""
    raw = body.encode("utf-8", "surrogatepass") if isinstance(body, str) else body
    if not base64_encoded:
        return raw
    try:
        return base64.b64decode(raw, validate=True)
    except (binascii.Error, ValueError) as error:
        raise InvalidInput([FieldProblem("body", "is flagged base64-encoded but is not valid base64")]) from error
