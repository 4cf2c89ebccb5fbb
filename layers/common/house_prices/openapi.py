"""The HTTP API's contract as an OpenAPI 3.0 document, built from the one homes of its facts.

Routes from ``house_prices.http_api``; request rules from ``house_prices.schema`` (features, ranges,
house ids, batch limit); names from ``naming`` and ``ids``; ``POST /feedback`` and live quality from
``feedback_api``. Served by the router at ``GET /openapi.json``; imported only when that is asked.
"""

from __future__ import annotations

import re
from typing import Any

from house_prices import feedback_api, http_api
from house_prices.ids import PREDICTION_ID_PATTERN
from house_prices.naming import CITY_PATTERN, VERSION_PATTERN
from house_prices.schema import (
    DEFAULT_MAX_HOUSES_PER_REQUEST,
    EXAMPLE_HOUSE,
    FEATURE_NAMES,
    FEATURES,
    HOUSE_ID,
    HOUSE_ID_MAX_LENGTH,
    HOUSE_ID_PATTERN,
)


def _ecma_pattern(python_pattern: str) -> str:
    """An anchored pattern without Python-only named groups (OpenAPI patterns are ECMA-262)."""
    return "^" + re.sub(r"\(\?P<\w+>", "(", python_pattern) + "$"


def house_json_schema() -> dict[str, Any]:
    """One house as JSON Schema, from FEATURES: every feature required, an optional ``house_id``, nothing else."""
    properties: dict[str, Any] = {}
    for f in FEATURES:
        prop: dict[str, Any] = {
            "type": "integer" if f.integer else "number",
            "minimum": f.minimum,
            "maximum": f.maximum,
            "description": f.description,
        }
        if f.step:
            prop["multipleOf"] = f.step
        properties[f.name] = prop
    properties[HOUSE_ID] = {
        "type": "string",
        "minLength": 1,
        "maxLength": HOUSE_ID_MAX_LENGTH,
        "pattern": _ecma_pattern(HOUSE_ID_PATTERN),
        "description": "optional: your own id for the house (printable US-ASCII, no leading or trailing "
        "space), echoed back with its price and recorded with the prediction",
    }
    return {
        "type": "object",
        "properties": properties,
        "required": list(FEATURE_NAMES),
        "additionalProperties": False,
        "example": {**EXAMPLE_HOUSE, HOUSE_ID: "listing-1234"},
    }


def openapi_document(max_houses: int = DEFAULT_MAX_HOUSES_PER_REQUEST, title: str = "House prices") -> dict[str, Any]:
    """The HTTP API as an OpenAPI 3.0 document: request rules from FEATURES, names from naming.

    Error bodies are the router's ``{"message", "errors": [{"field", "problem"}]}``; API Gateway's own
    errors (404 for no route, 413 over its payload quota, 500 for a failed invocation) carry only
    ``message``, so ``errors`` is optional in the schema.
    """

    def ref(name: str) -> dict[str, str]:
        return {"$ref": f"#/components/schemas/{name}"}

    def json_content(schema: dict[str, Any]) -> dict[str, Any]:
        return {"content": {"application/json": {"schema": schema}}}

    def error(description: str) -> dict[str, Any]:
        return {"description": description, **json_content(ref("Error"))}

    string = {"type": "string"}
    city = {
        "name": "city",
        "in": "path",
        "required": True,
        "description": "city name, e.g. Chicago_IL",
        "schema": {"type": "string", "pattern": _ecma_pattern(CITY_PATTERN), "example": "Chicago_IL"},
    }
    version = {
        "name": "version",
        "in": "query",
        "required": False,
        "description": "a model version to use instead of the live one",
        "schema": {"type": "string", "pattern": _ecma_pattern(VERSION_PATTERN)},
    }
    served_by = {
        "type": "object",
        "required": ["version", "target_model"],
        "properties": {"version": string, "target_model": string},
    }
    live: dict[str, Any] = {
        "type": "object",
        "required": ["version", "target_model", "promoted_at"],
        "properties": {"version": string, "target_model": string, "promoted_at": string},
    }
    rollout: dict[str, Any] = {
        "type": "object",
        "description": "the city's running rollout (docs/rollouts.md); null on the location when none runs",
        "required": ["mode", "candidate", "weight_bp", "started_at", "deadline", "policy", "history"],
        "properties": {
            "mode": {"type": "string", "enum": ["shadow", "canary"]},
            "candidate": {"type": "string", "pattern": _ecma_pattern(VERSION_PATTERN)},
            "candidate_target_model": string,
            "weight_bp": {
                "type": "integer",
                "minimum": 0,
                "maximum": 10_000,
                "description": "basis points: canary, the share of houses the candidate prices; shadow, the "
                "share of live predictions the candidate also scores",
            },
            "started_at": string,
            "deadline": {**string, "description": "the rollout ends (timed out) then without a decision"},
            "started_by": string,
            "revision": {"type": "integer"},
            "policy": {"type": "object", "description": "the guard settings, as stored"},
            "history": {
                "type": "array",
                "description": "the city's newest rollout events, newest first",
                "items": {
                    "type": "object",
                    "required": ["at", "action", "candidate"],
                    "properties": {
                        "at": string,
                        "action": string,
                        "candidate": string,
                        "live": string,
                        "actor": string,
                        "reason": string,
                        "evidence": {"type": "object"},
                    },
                },
            },
        },
    }
    schemas: dict[str, Any] = {
        "House": house_json_schema(),
        "Houses": {
            "type": "object",
            "properties": {"houses": {"type": "array", "items": ref("House"), "minItems": 1, "maxItems": max_houses}},
            "required": ["houses"],
            "additionalProperties": False,
        },
        "Predictions": {
            "type": "object",
            "required": ["location", "model", "predictions"],
            "properties": {
                "location": string,
                "model": served_by,
                "predictions": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["prediction_id", "price", "version"],
                        "properties": {
                            "prediction_id": {
                                "type": "string",
                                "pattern": _ecma_pattern(PREDICTION_ID_PATTERN),
                                "description": "unique, sorts by time: {ULID}-{city}; send it back with the sale price",
                            },
                            "price": {"type": "number"},
                            "version": {
                                "type": "string",
                                "pattern": _ecma_pattern(VERSION_PATTERN),
                                "description": "the version that priced this house: the model's, or during a "
                                "canary rollout (docs/rollouts.md) possibly the candidate's",
                            },
                            HOUSE_ID: {"type": "string", "description": "the house_id sent with the house, if any"},
                        },
                    },
                },
            },
        },
        "Locations": {
            "type": "object",
            "required": ["locations"],
            "properties": {
                "locations": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["location", "version", "target_model", "promoted_at"],
                        "properties": {"location": string, **live["properties"]},
                    },
                }
            },
        },
        "Location": {
            "type": "object",
            "required": ["location", "live", "versions", "features", "rollout"],
            "properties": {
                "location": string,
                "live": {**live, "nullable": True},
                "rollout": {**rollout, "nullable": True},
                "versions": {"type": "array", "items": {"type": "object"}},
                "features": {"type": "array", "items": {"type": "object"}},
                "quality": {
                    "type": "array",
                    "items": ref("VersionQuality"),
                    "description": "live error per version from late labels (POST /feedback), newest first",
                },
            },
        },
        "Health": {
            "type": "object",
            "required": ["status", "checks"],
            "properties": {"status": string, "checks": {"type": "object", "additionalProperties": string}},
        },
        "Error": {
            "type": "object",
            "required": ["message"],
            "properties": {
                "message": string,
                "errors": {
                    "type": "array",
                    "items": {
                        "type": "object",
                        "required": ["field", "problem"],
                        "properties": {"field": string, "problem": string},
                    },
                },
            },
        },
    }
    schemas.update(
        feedback_api.feedback_schemas(
            _ecma_pattern(PREDICTION_ID_PATTERN),
            _ecma_pattern(CITY_PATTERN),
            feedback_api.DEFAULT_MAX_LABELS_PER_REQUEST,
        )
    )
    unavailable = {
        "502": error("the model or its endpoint failed"),
        "503": error("the model is loading, the endpoint is throttled or the registry is down; retry"),
        "504": error("the model did not answer in time"),
    }
    operations: dict[tuple[str, str], dict[str, Any]] = {
        ("post", "/locations/{city}/predictions"): {
            "operationId": "predict",
            "summary": "Price one house, or up to max_houses in one request, with the city's live model",
            "parameters": [city, version],
            "requestBody": {
                "required": True,
                **json_content({"oneOf": [ref("House"), ref("Houses")]}),
            },
            "responses": {
                "200": {"description": "one price per house, in order", **json_content(ref("Predictions"))},
                "400": error("a field, the body, the city or the version is invalid: each problem is named"),
                "404": error("no live model for the city, or no such version"),
                "413": error(f"more than {max_houses} houses, or a body over the size limit"),
                **unavailable,
            },
        },
        ("get", "/locations"): {
            "operationId": "listLocations",
            "summary": "Every city with a live model",
            "responses": {
                "200": {"description": "live models", **json_content(ref("Locations"))},
                "503": error("the registry is unavailable; retry"),
            },
        },
        ("get", "/locations/{city}"): {
            "operationId": "describeLocation",
            "summary": "A city's live model, every version it has had, and the features it takes",
            "parameters": [city],
            "responses": {
                "200": {"description": "the city", **json_content(ref("Location"))},
                "400": error("the city name is invalid"),
                "404": error("no model has ever been trained for the city"),
                "503": error("the registry is unavailable; retry"),
            },
        },
        ("get", "/health"): {
            "operationId": "health",
            "summary": "Liveness; with deep=true, the registry is checked too",
            "parameters": [
                {
                    "name": "deep",
                    "in": "query",
                    "required": False,
                    "description": "true or 1 checks the registry too; any other value is a shallow check",
                    "schema": {"type": "string"},
                }
            ],
            "responses": {
                "200": {"description": "healthy", **json_content(ref("Health"))},
                "503": error("a dependency is down"),
            },
        },
        ("get", "/openapi.json"): {
            "operationId": "openapi",
            "summary": "This document",
            "responses": {"200": {"description": "the OpenAPI document", **json_content({"type": "object"})}},
        },
        feedback_api.FEEDBACK_ROUTE: feedback_api.feedback_operation(
            error, json_content, ref, feedback_api.DEFAULT_MAX_LABELS_PER_REQUEST
        ),
    }
    paths: dict[str, dict[str, Any]] = {}
    for route in http_api.ROUTES:
        method = route.method.lower()
        paths.setdefault(route.path, {})[method] = operations[(method, route.path)]
    return {
        "openapi": "3.0.3",
        "info": {
            "title": title,
            "version": "1.0",
            "description": "House-price predictions: one model per city, served by a SageMaker multi-model endpoint.",
        },
        "paths": paths,
        "components": {"schemas": schemas},
    }
