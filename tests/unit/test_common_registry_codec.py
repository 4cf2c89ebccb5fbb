"""The registry's AttributeValue mapping (``dynamodb_values``) gives boto3's TypeSerializer/TypeDeserializer results."""

from __future__ import annotations

import math
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from house_prices.dynamodb_values import deserialize, serialize

_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.text(max_size=20),
    st.integers(min_value=-(10**37), max_value=10**37),
    # within DynamoDB's number range (the bad-values test covers the rest)
    st.floats(allow_nan=False, allow_infinity=False, min_value=-1e100, max_value=1e100).filter(
        lambda f: f == 0 or abs(f) > 1e-100
    ),
)
values = st.recursive(
    _scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


def as_boto3_input(value: Any) -> Any:
    """What the registry used to hand boto3: floats through Decimal(repr(value))."""
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, dict):
        return {k: as_boto3_input(v) for k, v in value.items()}
    if isinstance(value, list):
        return [as_boto3_input(v) for v in value]
    return value


def plain(value: Any) -> Any:
    """boto3's decoded numbers as the registry returns them: whole numbers as int, others as float."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [plain(v) for v in value]
    return value


@given(st.dictionaries(st.text(min_size=1, max_size=8), values, max_size=5))
def test_items_serialise_and_read_back_exactly_as_with_boto3(item: dict[str, Any]) -> None:
    # Given any JSON-like registry item (metrics hold nested floats, ints, strings, lists)
    expected = {k: TypeSerializer().serialize(as_boto3_input(v)) for k, v in item.items()}
    # When it is serialised / Then the AttributeValues are boto3's
    assert serialize(item) == expected
    # And reading them back gives what boto3's deserializer gave the registry
    assert deserialize(expected) == {k: plain(TypeDeserializer().deserialize(v)) for k, v in expected.items()}


@pytest.mark.parametrize("bad", [math.nan, math.inf, 10**40, 2.2e-309, Decimal("1e-200"), object()])
def test_values_dynamodb_cannot_hold_are_refused_like_boto3(bad: Any) -> None:
    with pytest.raises((TypeError, ArithmeticError)) as boto3_error:
        TypeSerializer().serialize(as_boto3_input(bad))
    with pytest.raises(type(boto3_error.value)):
        serialize({"value": bad})
