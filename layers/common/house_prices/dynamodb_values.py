"""DynamoDB's AttributeValue mapping (the low-level API's ``{"S": ...}`` shapes) for the registry's items.

Written here rather than taken from ``boto3.dynamodb.types`` because importing any part of boto3 imports
all of it (and s3transfer), ~40 ms of the router's cold start for a few lines of mapping (stdlib only).
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Clamped, Context, Decimal, Inexact, Overflow, Rounded, Underflow
from typing import Any

# DynamoDB's number type (38 digits, exponent -130..125); a value it would round or clamp is refused,
# as boto3's TypeSerializer refuses it.
_DYNAMODB_NUMBER = Context(Emin=-128, Emax=126, prec=38, traps=[Clamped, Overflow, Inexact, Rounded, Underflow])


def to_attribute(value: Any) -> dict[str, Any]:
    """A Python value as a DynamoDB AttributeValue; floats go through their shortest repr.

    tests/unit/test_common_registry_codec.py checks it against boto3's TypeSerializer.
    """
    if value is None:
        return {"NULL": True}
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, float):
        value = Decimal(repr(value))
    if isinstance(value, (int, Decimal)):
        number = _DYNAMODB_NUMBER.create_decimal(value)
        if not number.is_finite():
            raise TypeError("Infinity and NaN not supported")
        return {"N": str(number)}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, (bytes, bytearray)):
        return {"B": bytes(value)}
    if isinstance(value, Mapping):
        return {"M": {str(key): to_attribute(item) for key, item in value.items()}}
    if isinstance(value, (list, tuple)):
        return {"L": [to_attribute(item) for item in value]}
    raise TypeError(f"cannot store {type(value).__name__} in the registry")


def from_attribute(attribute: Mapping[str, Any]) -> Any:
    """The inverse of ``to_attribute``; whole numbers come back as int, others as float."""
    [(kind, raw)] = attribute.items()
    if kind == "N":
        number = _DYNAMODB_NUMBER.create_decimal(raw)
        return int(number) if number == number.to_integral_value() else float(number)
    if kind == "M":
        return {key: from_attribute(item) for key, item in raw.items()}
    if kind == "L":
        return [from_attribute(item) for item in raw]
    if kind == "NULL":
        return None
    if kind in {"S", "BOOL", "B"}:
        return raw
    raise TypeError(f"unexpected DynamoDB attribute type {kind!r}")


def serialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: to_attribute(value) for key, value in item.items()}


def deserialize(item: Mapping[str, Any]) -> dict[str, Any]:
    return {key: from_attribute(attribute) for key, attribute in item.items()}
