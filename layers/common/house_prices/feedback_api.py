"""The OpenAPI pieces of ``POST /feedback`` and of a city's live quality (merged by ``openapi.openapi_document``)."""

from __future__ import annotations

from typing import Any

FEEDBACK_ROUTE = ("post", "/feedback")
# A label's fields and limits (house_prices.labels validates them; this module only describes them).
PREDICTION_ID = "prediction_id"
CITY = "city"
SALE_PRICE = "sale_price"
SOLD_AT = "sold_at"
LABELS = "labels"
DEFAULT_MAX_LABELS_PER_REQUEST = 1000
# A sale price is a house's: up to a billion dollars. Anything above is a unit or typing mistake.
MAX_SALE_PRICE = 1e9


def feedback_schemas(prediction_id_pattern: str, city_pattern: str, max_labels: int) -> dict[str, Any]:
    nullable_number = {"type": "number", "nullable": True}
    sale = {"type": "number", "exclusiveMinimum": True, "minimum": 0, "maximum": MAX_SALE_PRICE}
    sold_at = {"type": "string", "format": "date", "description": "the sale's date, YYYY-MM-DD (not in the future)"}
    by_id = {
        "type": "object",
        "required": [PREDICTION_ID, SALE_PRICE, SOLD_AT],
        "additionalProperties": False,
        "properties": {
            PREDICTION_ID: {
                "type": "string",
                "pattern": prediction_id_pattern,
                "description": "as the API returned it; refused once older than the retention window (365 days)",
            },
            SALE_PRICE: sale,
            SOLD_AT: sold_at,
        },
    }
    by_house = {
        "type": "object",
        "required": [CITY, "house_id", SALE_PRICE, SOLD_AT],
        "additionalProperties": False,
        "properties": {
            CITY: {"type": "string", "pattern": city_pattern},
            "house_id": {"type": "string", "minLength": 1, "maxLength": 64, "description": "as sent with the house"},
            SALE_PRICE: sale,
            SOLD_AT: sold_at,
        },
    }
    return {
        "Label": {"oneOf": [by_id, by_house]},
        "Labels": {
            "type": "object",
            "required": [LABELS],
            "additionalProperties": False,
            "properties": {
                LABELS: {
                    "type": "array",
                    "items": {"$ref": "#/components/schemas/Label"},
                    "minItems": 1,
                    "maxItems": max_labels,
                }
            },
        },
        "FeedbackAccepted": {
            "type": "object",
            "required": ["accepted"],
            "properties": {"accepted": {"type": "integer", "description": "labels queued; each is counted once"}},
        },
        "VersionQuality": {
            "type": "object",
            "required": ["version", "count"],
            "properties": {
                "version": {"type": "string"},
                "count": {"type": "integer", "description": "labels joined to this version's predictions"},
                "mae": nullable_number,
                "median_ape": {**nullable_number, "description": "median |predicted - sale| / sale (0.1 = 10 %)"},
                "bias": {**nullable_number, "description": "mean predicted - sale: > 0 prices too high"},
                "median_ae": nullable_number,
                "offline_ae_p50": {**nullable_number, "description": "the quality gate's validation.ae_p50"},
                "live_vs_offline": {**nullable_number, "description": "median_ae / offline_ae_p50"},
                "drift": {
                    "type": "object",
                    "nullable": True,
                    "description": (
                        "input drift of the captured predictions against the version's training rows (null until "
                        "counted): count, drifting, and per feature psi, js (Jensen-Shannon distance) and drifting"
                    ),
                    "properties": {
                        "count": {"type": "integer"},
                        "drifting": {"type": "boolean"},
                        "features": {"type": "object", "additionalProperties": {"type": "object"}},
                    },
                },
            },
        },
    }


def feedback_operation(error: Any, json_content: Any, ref: Any, max_labels: int) -> dict[str, Any]:
    return {
        "operationId": "feedback",
        "summary": "Report sale prices of priced houses (late labels); each label is counted once",
        "requestBody": {"required": True, **json_content({"oneOf": [ref("Label"), ref("Labels")]})},
        "responses": {
            "202": {"description": "queued for the live quality figures", **json_content(ref("FeedbackAccepted"))},
            "400": error("a label is invalid or outside the retention window: each problem is named"),
            "413": error(f"more than {max_labels} labels, or a body over the size limit"),
            "503": error("the feedback queue is unavailable; retry"),
        },
    }
