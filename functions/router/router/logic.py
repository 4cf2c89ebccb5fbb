"""What the API does, free of HTTP and of boto3: validate, resolve the model, invoke, shape the answer.

One InvokeEndpoint per request, or one per side of a canary rollout (``router.routing``).
"""

from __future__ import annotations

import base64
import binascii
import json
import time
from collections.abc import Callable, Sequence
from typing import Any, NamedTuple, Protocol

from house_prices import ids, naming, schema
from house_prices.captures import rollout_tag
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
from house_prices.registry import LiveModel, ModelVersion, Rollout, RolloutEvent
from router import routing

JsonObject = dict[str, Any]
# GET /locations/{city}: the newest events of the city's rollout history shown with a running rollout.
ROLLOUT_EVENTS_SHOWN = 5
# Aggregate count of candidate calls that failed and were answered by the live version (no city dimension).
CANDIDATE_FALLBACK_METRIC = "RolloutCandidateFallbacks"


class Registry(Protocol):
    def live_model(self, city: str) -> LiveModel: ...
    def version(self, city: str, version: str) -> ModelVersion: ...
    def versions(self, city: str) -> list[ModelVersion]: ...
    def live_models(self) -> list[LiveModel]: ...
    def rollout_history(self, city: str, limit: int = 50) -> list[RolloutEvent]: ...
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
        rollout: dict[str, Any] | None = None,
        latency_ms: float | None = None,
        candidate_error: str | None = None,
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
        candidate_endpoint: Endpoint | None = None,
    ) -> None:
        self.quality = quality
        self.registry = registry
        self.endpoint = endpoint
        # A rollout's candidate is called without retries (wiring): the live version is its retry.
        self.candidate_endpoint = candidate_endpoint or endpoint
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
        model_version, target, rollout = self._resolve(city, version)
        csv_body = schema.rows_to_csv(rows)
        if len(csv_body.encode("utf-8")) > schema.MAX_ENDPOINT_BODY_BYTES:
            raise PayloadTooLarge("houses", f"the batch exceeds the endpoint's {schema.MAX_ENDPOINT_BODY_BYTES} bytes")
        # One id per house, consecutive; each call is named after the ULID of the first house it prices.
        prediction_ids = self._new_prediction_ids(city, len(rows))
        priced = self._price(city, model_version, target, rollout, rows, batch.house_ids, csv_body, prediction_ids)
        finished = self._clock()

        metrics.add_metric(name="HousesPerRequest", unit=MetricUnit.Count, value=len(rows))
        for call in (priced.candidate, priced.live):
            if call is not None:
                metrics.add_metric(name="EndpointLatency", unit=MetricUnit.Milliseconds, value=call.milliseconds)
        metrics.add_metric(name="PredictionLatency", unit=MetricUnit.Milliseconds, value=(finished - started) * 1000)
        # City and version are high-cardinality: metadata and logs only, never a dimension.
        metrics.add_metadata(key="city", value=city)
        metrics.add_metadata(key="version", value=model_version)
        captured = 0
        if self.capture is not None:
            captured = self._capture(city, model_version, request_id, prediction_ids, batch, priced)
        logger.info(
            "Predicted", extra={"city": city, "version": model_version, "houses": len(rows), "captured": captured}
        )
        served_by = priced.versions or [model_version] * len(rows)
        return {
            "location": city,
            "model": {"version": model_version, "target_model": target},
            "predictions": [
                _prediction(prediction_id, price, served, house_id)
                for prediction_id, price, served, house_id in zip(
                    prediction_ids, priced.prices, served_by, batch.house_ids, strict=True
                )
            ],
        }

    def _price(
        self,
        city: str,
        live_version: str,
        target: str,
        rollout: Rollout | None,
        rows: Sequence[Sequence[float]],
        house_ids: Sequence[str | None],
        csv_body: str,
        prediction_ids: Sequence[str],
    ) -> _Priced:
        """Route the houses (``router.routing``), call each side once, and fall back to live for the candidate's."""
        if rollout is None:  # the path of every request outside a rollout: nothing routed, nothing built
            live = self._call(self.endpoint, target, range(len(rows)), rows, csv_body, prediction_ids)
            return _Priced(live.prices, None, None, None, live, None, None)
        route = routing.plan(city, rollout, rows, house_ids, tag_for_capture=self.capture is not None)
        if not route.candidate:
            live = self._call(self.endpoint, target, route.live, rows, csv_body, prediction_ids)
            return _Priced(live.prices, None, route, rollout, live, None, None)
        try:
            candidate = self._call(
                self.candidate_endpoint, rollout.candidate_target_model, route.candidate, rows, csv_body, prediction_ids
            )
        except Exception as error:  # the candidate must never fail a request: live prices its houses instead
            failure = type(error).__name__
            self._candidate_failed(city, rollout, failure, len(route.candidate), error)
            live = self._call(self.endpoint, target, range(len(rows)), rows, csv_body, prediction_ids)
            return _Priced(live.prices, None, route, rollout, live, None, failure)
        live_call = (
            self._call(self.endpoint, target, route.live, rows, csv_body, prediction_ids) if route.live else None
        )
        prices, versions = _merge(len(rows), live_version, live_call, rollout.candidate_version, candidate)
        return _Priced(prices, versions, route, rollout, live_call, candidate, None)

    def _call(
        self,
        endpoint: Endpoint,
        target: str,
        indexes: Sequence[int],
        rows: Sequence[Sequence[float]],
        csv_body: str,
        prediction_ids: Sequence[str],
    ) -> _Call:
        """One InvokeEndpoint for the houses at ``indexes`` (the whole request's CSV when they are all of it)."""
        body = csv_body if len(indexes) == len(rows) else schema.rows_to_csv([rows[i] for i in indexes])
        invoked = self._clock()
        prices = endpoint.invoke(target, body, prediction_ids[indexes[0]][: ids.ULID_LENGTH])
        milliseconds = (self._clock() - invoked) * 1000
        if len(prices) != len(indexes):
            raise ModelInvocationError(f"The model returned {len(prices)} predictions for {len(indexes)} houses")
        return _Call(indexes, prices, milliseconds)

    @staticmethod
    def _candidate_failed(city: str, rollout: Rollout, kind: str, houses: int, error: Exception) -> None:
        # Counted without any dimension (the decider reads per-rollout error rates from the capture lines).
        metrics.add_metric(name=CANDIDATE_FALLBACK_METRIC, unit=MetricUnit.Count, value=1)
        logger.warning(
            "The rollout's candidate failed; the live version priced its houses",
            extra={
                "city": city,
                "candidate": rollout.candidate_version,
                "kind": kind,
                "houses": houses,
                "error": str(error)[:256],
            },
        )

    def _capture(
        self,
        city: str,
        model_version: str,
        request_id: str,
        prediction_ids: Sequence[str],
        batch: schema.Batch,
        priced: _Priced,
    ) -> int:
        """Record the request: untagged outside a rollout, else one record per routing group (docs/rollouts.md)."""
        assert self.capture is not None
        rows, house_ids, prices, rollout = batch.rows, batch.house_ids, priced.prices, priced.rollout
        if priced.route is None or priced.route.groups is None or rollout is None:
            return self.capture.record(
                city=city,
                version=model_version,
                request_id=request_id,
                prediction_ids=prediction_ids,
                rows=rows,
                prices=prices,
                house_ids=house_ids,
            )
        captured = 0
        for group in priced.route.groups:
            arm, version, call, error = group.arm, model_version, priced.live, None
            if arm == routing.CANDIDATE_ARM:
                if priced.candidate is not None:
                    version, call = rollout.candidate_version, priced.candidate
                else:  # routed to the candidate, which failed: the live call priced these houses
                    arm, error = routing.LIVE_ARM, priced.failure
            whole = len(group.indexes) == len(rows)
            captured += self.capture.record(
                city=city,
                version=version,
                request_id=request_id,
                prediction_ids=prediction_ids if whole else [prediction_ids[i] for i in group.indexes],
                rows=rows if whole else [rows[i] for i in group.indexes],
                prices=prices if whole else [prices[i] for i in group.indexes],
                house_ids=house_ids if whole else [house_ids[i] for i in group.indexes],
                rollout=rollout_tag(rollout.candidate_version, rollout.mode, arm, group.sampled),
                latency_ms=round(call.milliseconds, 3) if call is not None else None,
                candidate_error=error,
            )
        return captured

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
            "rollout": self._rollout_view(city, live.rollout) if live and live.rollout else None,
        }

    def _rollout_view(self, city: str, rollout: Rollout) -> JsonObject:
        """The running rollout as GET /locations/{city} shows it, with the newest events of its history."""
        return {
            "mode": rollout.mode,
            "candidate": rollout.candidate_version,
            "candidate_target_model": rollout.candidate_target_model,
            "weight_bp": rollout.weight_bp,
            "started_at": rollout.started_at,
            "deadline": rollout.deadline,
            "started_by": rollout.started_by,
            "revision": rollout.revision,
            "policy": rollout.policy,
            "history": [_event(event) for event in self.registry.rollout_history(city, limit=ROLLOUT_EVENTS_SHOWN)],
        }

    def health(self, deep: bool = False) -> JsonObject:
        checks = {"settings": "ok"}
        if deep:
            self.registry.ping()
            checks["registry"] = "ok"
        return {"status": "ok", "checks": checks}

    def openapi(self) -> JsonObject:
        """The API's OpenAPI document, with this router's batch limit."""
        from house_prices import openapi  # only this route needs the document's builder: not at cold start

        return openapi.openapi_document(self.max_houses)

    def _resolve(self, city: str, version: str | None) -> tuple[str, str, Rollout | None]:
        """The model that answers (live, or the pinned version) and the rollout to apply (never when pinned)."""
        if version is None:
            live = self.registry.live_model(city)
            return live.version, live.target_model, live.rollout
        # A pinned version bypasses any rollout; a rollout's candidate (status "candidate") may be pinned.
        pinned = self.registry.version(city, version)
        if pinned.status == "rejected":
            raise NotFound("version", f"{version!r} was rejected and is never served", f"Unservable version: {version}")
        return pinned.version, pinned.target_model, None


class _Call(NamedTuple):
    """One InvokeEndpoint's houses (indexes into the request), their prices in that order, its latency."""

    indexes: Sequence[int]
    prices: list[float]
    milliseconds: float


class _Priced(NamedTuple):
    """A request's prices in house order, who priced them, and the calls made (for metrics and capture)."""

    prices: Sequence[float]
    versions: Sequence[str] | None  # per house; None: every house was priced by the resolved version
    route: routing.Plan | None  # None: no rollout
    rollout: Rollout | None
    live: _Call | None
    candidate: _Call | None
    failure: str | None  # the candidate's error class when it failed and live priced its houses


def _merge(
    count: int, live_version: str, live: _Call | None, candidate_version: str, candidate: _Call
) -> tuple[list[float], list[str]]:
    """Each house's price and the version that priced it, in request order."""
    prices = [0.0] * count
    versions = [live_version] * count
    for index, price in zip(candidate.indexes, candidate.prices, strict=True):
        prices[index] = price
        versions[index] = candidate_version
    if live is not None:
        for index, price in zip(live.indexes, live.prices, strict=True):
            prices[index] = price
    return prices, versions


def _event(event: RolloutEvent) -> JsonObject:
    return {
        "at": event.at,
        "action": event.action,
        "candidate": event.candidate_version,
        "live": event.live_version,
        "actor": event.actor,
        "reason": event.reason,
        "evidence": event.evidence,
    }


def _prediction(prediction_id: str, price: float, version: str, house_id: str | None) -> JsonObject:
    answer: JsonObject = {"prediction_id": prediction_id, "price": price, "version": version}
    if house_id is not None:
        answer[schema.HOUSE_ID] = house_id
    return answer


def parse_request_houses(body: str | bytes | None, base64_encoded: bool, max_houses: int) -> schema.Batch:
    """Raw HTTP body -> validated rows in feature order and house ids; every failure names ``body`` or a field."""
    payload = parse_json_body(
        body, base64_encoded, schema.MAX_ENDPOINT_BODY_BYTES, 'a house object or {"houses": [...]}'
    )
    return schema.parse_batch(payload, max_houses)


def parse_json_body(body: str | bytes | None, base64_encoded: bool, max_bytes: int, expected: str) -> Any:
    """Raw HTTP body -> its JSON value (at most ``max_bytes`` once decoded); every failure names ``body``, and an
    empty body is told it needs ``expected``."""
    raw = decode_body(body, base64_encoded)
    if len(raw) > max_bytes:
        raise PayloadTooLarge("body", f"must be at most {max_bytes} bytes, got {len(raw)}")
    if not raw.strip():
        raise InvalidInput([FieldProblem("body", f"is required: {expected}")])
    try:
        return json.loads(raw)
    except RecursionError as error:
        raise InvalidInput([FieldProblem("body", "is nested too deeply")]) from error
    except ValueError as error:  # JSONDecodeError, bad UTF-8, integers over Python's 4300-digit limit
        raise InvalidInput([FieldProblem("body", f"must be valid JSON: {error}")]) from error


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
