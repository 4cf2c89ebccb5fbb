"""What the API does, free of HTTP and of boto3: validate, resolve the model, invoke once, shape the answer."""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, Protocol

from house_prices import ids, naming, schema
from house_prices.errors import (
    FieldProblem,
    InvalidInput,
    ModelInvocationError,
    NotFound,
    PayloadTooLarge,
    UnknownCity,
)
from house_prices.live_quality import QualitySummary
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
    def invoke(self, target_model: str, csv_body: str, inference_id: str | None = None) -> list[float]: ...


class Capture(Protocol):
    """Records predictions without a network round trip (``router.capture.PredictionCapture``)."""

    def record(
        self,
        *,
        city: str,
        version: str,
        request_id: str,
        prediction_ids: Sequence[str],
        rows: Sequence[Sequence[float]],
        prices: Sequence[float],
        house_ids: Sequence[str | None],
    ) -> int: ...


class QualityReader(Protocol):
    """A city's live quality per version (late labels; docs/quality.md)."""

    def summaries(self, city: str) -> list[QualitySummary]: ...


class RouterService:
    def __init__(
        self,
        registry: Registry,
        endpoint: Endpoint,
        max_houses: int = schema.DEFAULT_MAX_HOUSES_PER_REQUEST,
        clock: Callable[[], float] = time.perf_counter,
        capture: Capture | None = None,
        new_prediction_ids: Callable[[str, int], list[str]] = ids.new_prediction_ids,
        quality: QualityReader | None = None,
    ) -> None:
        self.quality = quality
        self.registry = registry
        self.endpoint = endpoint
        self.max_houses = max_houses
        self._clock = clock
        self.capture = capture
        self._new_prediction_ids = new_prediction_ids

    @tracer.capture_method
    def predict(
        self,
        city: str,
        body: str | bytes | None,
        version: str | None = None,
        base64_encoded: bool = False,
        request_id: str = "",
    ) -> JsonObject:
        started = self._clock()
        # Path and query first: nothing is decoded, looked up or built for a name we would refuse.
        naming.validate_city(city)
        if version is not None:
            naming.validate_version(version)
        batch = parse_request_houses(body, base64_encoded, self.max_houses)
        rows = batch.rows
        model_version, target = self._resolve(city, version)
        csv_body = schema.rows_to_csv(rows)
        if len(csv_body.encode("utf-8")) > schema.MAX_ENDPOINT_BODY_BYTES:
            raise PayloadTooLarge("houses", f"the batch exceeds the endpoint's {schema.MAX_ENDPOINT_BODY_BYTES} bytes")
        # One id per house, consecutive; the first one's ULID names the whole call for SageMaker.
        prediction_ids = self._new_prediction_ids(city, len(rows))

        invoked = self._clock()
        prices = self.endpoint.invoke(target, csv_body, prediction_ids[0][: ids.ULID_LENGTH])
        finished = self._clock()
        if len(prices) != len(rows):
            raise ModelInvocationError(f"The model returned {len(prices)} predictions for {len(rows)} houses")

        metrics.add_metric(name="HousesPerRequest", unit=MetricUnit.Count, value=len(rows))
        metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=(finished - invoked) * 1000)
        metrics.add_metric(name="PredictionLatency", unit=MetricUnit.Milliseconds, value=(finished - started) * 1000)
        # City and version are high-cardinality: metadata and logs only, never a dimension.
        metrics.add_metadata(key="city", value=city)
        metrics.add_metadata(key="version", value=model_version)
        captured = 0
        if self.capture is not None:
            captured = self.capture.record(
                city=city,
                version=model_version,
                request_id=request_id,
                prediction_ids=prediction_ids,
                rows=rows,
                prices=prices,
                house_ids=batch.house_ids,
            )
        logger.info(
            "Predicted", extra={"city": city, "version": model_version, "houses": len(rows), "captured": captured}
        )
        return {
            "location": city,
            "model": {"version": model_version, "target_model": target},
            "predictions": [
                _prediction(prediction_id, price, house_id)
                for prediction_id, price, house_id in zip(prediction_ids, prices, batch.house_ids, strict=True)
            ],
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
            "quality": [s.as_dict() for s in self.quality.summaries(city)] if self.quality else [],
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


def _prediction(prediction_id: str, price: float, house_id: str | None) -> JsonObject:
    answer: JsonObject = {"prediction_id": prediction_id, "price": price}
    if house_id is not None:
        answer[schema.HOUSE_ID] = house_id
    return answer


def parse_request_houses(body: str | bytes | None, base64_encoded: bool, max_houses: int) -> schema.Batch:
    """Raw HTTP body -> validated rows in feature order and house ids; every failure names ``body`` or a field."""
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
    return schema.parse_batch(payload, max_houses)


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
