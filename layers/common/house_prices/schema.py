"""House features: names, order, types and valid ranges — the only home of these facts.

The order of ``FEATURES`` is the CSV column order for training files (after ``PRICE``) and for
InvokeEndpoint bodies. Pure Python on purpose: the Lambda layer must stay free of numpy.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from house_prices.errors import FieldProblem, InvalidInput, PayloadTooLarge

TARGET = "PRICE"
MAX_YEAR = 2019
HOUSES_PER_CITY = 1000

SEED_CITIES: tuple[str, ...] = (
    "NewYork_NY",
    "LosAngeles_CA",
    "Chicago_IL",
    "Houston_TX",
    "Dallas_TX",
    "Phoenix_AZ",
    "Philadelphia_PA",
    "SanAntonio_TX",
    "SanDiego_CA",
    "SanFrancisco_CA",
)


@dataclass(frozen=True)
class Feature:
    name: str
    minimum: float
    maximum: float
    integer: bool = False
    # Bathrooms come in halves; any other step would be a value the model never saw.
    step: float | None = None
    description: str = ""

    def problem_with(self, value: Any) -> str | None:
        """Return why ``value`` is not acceptable for this feature, or None if it is.

        The range is checked before any arithmetic: comparing a huge int or float with the bounds
        is exact and cannot overflow, while ``int(1e308 / 0.5)`` would.
        """
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return f"must be a number, got {type(value).__name__}"
        if isinstance(value, float) and not math.isfinite(value):
            return "must be a finite number"
        if not (self.minimum <= value <= self.maximum):
            return f"must be between {_fmt(self.minimum)} and {_fmt(self.maximum)}, got {_short(value)}"
        if self.integer and value != int(value):
            return f"must be a whole number, got {value}"
        if self.step is not None and (value / self.step) != int(value / self.step):
            return f"must be a multiple of {self.step}, got {value}"
        return None


FEATURES: tuple[Feature, ...] = (
    Feature("YEAR_BUILT", 1800, 2100, integer=True, description="year the house was built"),
    Feature("SQUARE_FEET", 100, 50_000, integer=True, description="living area in square feet"),
    Feature("NUM_BEDROOMS", 0, 20, integer=True, description="number of bedrooms"),
    Feature("NUM_BATHROOMS", 0, 20, step=0.5, description="bathrooms, in halves"),
    Feature("LOT_ACRES", 0, 100, description="lot size in acres"),
    Feature("GARAGE_SPACES", 0, 10, integer=True, description="garage spaces"),
)
FEATURE_NAMES: tuple[str, ...] = tuple(feature.name for feature in FEATURES)
# One plausible house, for examples printed by tools and docs.
EXAMPLE_HOUSE: dict[str, float] = dict(zip(FEATURE_NAMES, (2005, 3100, 4, 2.5, 1.1, 2)))
CSV_COLUMNS: tuple[str, ...] = (TARGET, *FEATURE_NAMES)

# A caller's own id for a house, optional, echoed back with its price and captured with it (so a sale
# price can later be sent with the city and this id). Never a feature: it never reaches the model.
# Printable US-ASCII without a leading or trailing space, so "A1" and "A1 " can never be two houses.
HOUSE_ID = "house_id"
HOUSE_ID_MAX_LENGTH = 64
HOUSE_ID_PATTERN = r"[!-~](?:[ -~]{0,62}[!-~])?"
_HOUSE_ID = re.compile(HOUSE_ID_PATTERN)

# The SageMaker Runtime InvokeEndpoint payload limit.
MAX_ENDPOINT_BODY_BYTES = 6_291_456
# Worst-case CSV bytes for one house row, so a batch limit can be proved to fit the endpoint body.
_MAX_ROW_BYTES = sum(len(f"{-f.maximum:.6f}") for f in FEATURES) + len(FEATURES)
DEFAULT_MAX_HOUSES_PER_REQUEST = 1000
assert DEFAULT_MAX_HOUSES_PER_REQUEST * _MAX_ROW_BYTES < MAX_ENDPOINT_BODY_BYTES


def _field_label(name: object) -> str:
    """A printable, bounded label for a client-supplied key (it is echoed back in errors)."""
    text = str(name)
    if not text:
        return "<empty key>"
    return text if len(text) <= 64 else text[:61] + "..."


def _short(value: float) -> str:
    """Echo a client's number without letting a 400-digit integer bloat the error."""
    text = repr(value)
    return text if len(text) <= 32 else text[:29] + "..."


def _fmt(number: float) -> str:
    return str(int(number)) if float(number).is_integer() else str(number)


House = tuple[float, ...]


@dataclass(frozen=True)
class Batch:
    """A request's houses: feature rows for the model, and each house's ``house_id`` (None if not sent)."""

    rows: list[House]
    house_ids: list[str | None]


def house_id_problem(value: Any) -> str | None:
    """Why ``value`` is not a valid ``house_id``, or None if it is."""
    if not isinstance(value, str):
        return f"must be a string, got {type(value).__name__}"
    if not 1 <= len(value) <= HOUSE_ID_MAX_LENGTH:
        return f"must be 1 to {HOUSE_ID_MAX_LENGTH} characters, got {len(value)}"
    if not _HOUSE_ID.fullmatch(value):
        return "must be printable US-ASCII characters, without a leading or trailing space"
    return None


def parse_house(candidate: Any, path: str = "") -> House:
    """Validate one house mapping and return its values in feature order."""
    return _parse_house(candidate, path)[0]


def _parse_house(candidate: Any, path: str) -> tuple[House, str | None]:
    prefix = f"{path}." if path else ""
    if not isinstance(candidate, Mapping):
        raise InvalidInput([FieldProblem(path or "body", "must be a JSON object of house features")])
    problems: list[FieldProblem] = []
    for unknown in sorted(set(candidate) - set(FEATURE_NAMES) - {HOUSE_ID}, key=str):
        problems.append(FieldProblem(f"{prefix}{_field_label(unknown)}", "is not a known feature"))
    house_id = candidate.get(HOUSE_ID)
    if HOUSE_ID in candidate:
        id_problem = house_id_problem(house_id)
        if id_problem:
            problems.append(FieldProblem(f"{prefix}{HOUSE_ID}", id_problem))
    values: list[float] = []
    for feature in FEATURES:
        if feature.name not in candidate:
            problems.append(FieldProblem(f"{prefix}{feature.name}", "is required"))
            continue
        value = candidate[feature.name]
        problem = feature.problem_with(value)
        if problem:
            problems.append(FieldProblem(f"{prefix}{feature.name}", problem))
        else:
            values.append(int(value) if feature.integer else float(value))
    if problems:
        raise InvalidInput(problems)
    return tuple(values), house_id


def parse_houses(payload: Any, max_houses: int = DEFAULT_MAX_HOUSES_PER_REQUEST) -> list[House]:
    """Accept one house object or ``{"houses": [...]}`` and return rows in feature order."""
    return parse_batch(payload, max_houses).rows


def parse_batch(payload: Any, max_houses: int = DEFAULT_MAX_HOUSES_PER_REQUEST) -> Batch:
    """Accept one house object or ``{"houses": [...]}``: rows in feature order and each house's id.

    Every problem in every house is reported at once, each naming its field path.
    """
    if isinstance(payload, Mapping) and "houses" in payload:
        houses = payload["houses"]
        extra = sorted(set(payload) - {"houses"}, key=str)
        if extra:
            raise InvalidInput([FieldProblem(_field_label(name), "is not allowed next to 'houses'") for name in extra])
        if not isinstance(houses, list):
            raise InvalidInput([FieldProblem("houses", "must be a list of house objects")])
        if not houses:
            raise InvalidInput([FieldProblem("houses", "must contain at least one house")])
        if len(houses) > max_houses:
            raise PayloadTooLarge("houses", f"at most {max_houses} houses per request, got {len(houses)}")
        rows: list[House] = []
        house_ids: list[str | None] = []
        problems: list[FieldProblem] = []
        for index, house in enumerate(houses):
            try:
                row, house_id = _parse_house(house, f"houses[{index}]")
            except InvalidInput as invalid:
                problems.extend(invalid.problems)
                continue
            rows.append(row)
            house_ids.append(house_id)
        if problems:
            raise InvalidInput(problems)
        return Batch(rows, house_ids)
    row, house_id = _parse_house(payload, "")
    return Batch([row], [house_id])


def rows_to_csv(rows: Sequence[Sequence[float]]) -> str:
    """Serialise rows as headerless CSV in feature order (the InvokeEndpoint body)."""
    return "".join(",".join(repr(value) for value in row) + "\n" for row in rows)


def house_from_row(row: Sequence[float]) -> dict[str, float]:
    """The API's JSON object for a row in feature order (e.g. a numpy row), with plain int/float values.

    Integer features come back as ``int`` so the object serialises as a client would send it.
    """
    if len(row) != len(FEATURES):
        raise ValueError(f"expected {len(FEATURES)} values, got {len(row)}")
    # The length is checked above because py3.9 in SageMaker sklearn 1.2-1 has no zip(strict=).
    return {f.name: int(value) if f.integer else float(value) for f, value in zip(FEATURES, row)}


def describe_features() -> list[dict[str, Any]]:
    """Feature documentation for API responses and docs."""
    return [
        {
            "name": f.name,
            "type": "integer" if f.integer else "number",
            "minimum": f.minimum,
            "maximum": f.maximum,
            **({"multiple_of": f.step} if f.step else {}),
            "description": f.description,
        }
        for f in FEATURES
    ]


# --- the HTTP API's contract as OpenAPI 3 ------------------------------------------------------

# Each route of the HTTP API: (method, path) -> what it does. The template's HttpApi events and the
# router's resolver serve exactly these (tests/unit/test_openapi.py holds the three together).
API_ROUTES: tuple[tuple[str, str], ...] = (
    ("post", "/locations/{city}/predictions"),
    ("get", "/locations"),
    ("get", "/locations/{city}"),
    ("get", "/health"),
    ("get", "/openapi.json"),
    ("post", "/feedback"),
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
    from house_prices import feedback_api
    from house_prices.ids import PREDICTION_ID_PATTERN
    from house_prices.naming import CITY_PATTERN, VERSION_PATTERN

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
    for method, path in API_ROUTES:
        paths.setdefault(path, {})[method] = operations[(method, path)]
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
