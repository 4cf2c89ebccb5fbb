"""The OpenAPI document: valid OpenAPI 3, the template's routes exactly, and the schema module's rules exactly."""

from __future__ import annotations

import math
import re
from typing import Any

import jsonschema
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from house_prices import http_api, openapi, schema
from house_prices.errors import InvalidInput
from local.template import Template
from router import handler

DOCUMENT = openapi.openapi_document()


def test_the_document_is_valid_openapi_3() -> None:
    validate(DOCUMENT)  # raises on any violation of the OpenAPI 3.0 schema


def _operations(document: dict[str, Any]) -> set[tuple[str, str]]:
    return {(method.upper(), path) for path, item in document["paths"].items() for method in item}


def test_the_document_has_exactly_the_templates_routes_and_the_routers() -> None:
    template_routes = {(route.method, route.path) for route in Template.load().function("RouterFunction").http_routes}
    router_routes = {
        (method, re.sub(r"<(\w+)>", r"{\1}", path)) for path, methods in handler.ROUTES.items() for method in methods
    }
    assert _operations(DOCUMENT) == template_routes == router_routes


def test_path_parameters_are_declared_for_every_templated_path() -> None:
    for path, item in DOCUMENT["paths"].items():
        for operation in item.values():
            declared = {p["name"] for p in operation.get("parameters", []) if p["in"] == "path"}
            assert declared == set(re.findall(r"\{(\w+)\}", path)), path


def test_the_batch_limit_is_the_routers() -> None:
    houses = openapi.openapi_document(max_houses=7)["components"]["schemas"]["Houses"]
    assert houses["properties"]["houses"]["maxItems"] == 7


HOUSE_VALIDATOR = jsonschema.Draft4Validator(openapi.house_json_schema())


def _value() -> st.SearchStrategy[Any]:
    return st.one_of(
        st.integers(min_value=-10, max_value=60_000),
        st.floats(allow_nan=True, allow_infinity=True),
        st.sampled_from([0.5, 2.5, 2.25, 1800.5, 100.0, 20.0, -0.0]),
        st.text(max_size=3),
        st.booleans(),
        st.none(),
    )


def _in_range(feature: schema.Feature) -> st.SearchStrategy[Any]:
    low, high = int(feature.minimum), int(feature.maximum)
    if feature.integer:
        return st.integers(min_value=low, max_value=high)
    if feature.step:
        return st.integers(min_value=0, max_value=int(high / feature.step)).map(lambda n: n * feature.step)
    return st.floats(min_value=feature.minimum, max_value=feature.maximum)


houses = st.fixed_dictionaries(
    {},
    optional={
        **{name: _value() for name in schema.FEATURE_NAMES},
        "POOL": st.integers(),
        schema.HOUSE_ID: st.text(max_size=70) | st.from_regex(f"\\A{schema.HOUSE_ID_PATTERN}\\Z") | st.integers(),
    },
)


def _router_accepts(house: dict[str, Any]) -> bool:
    try:
        schema.parse_house(house)
    except InvalidInput:
        return False
    return True


@settings(max_examples=400, deadline=None)
@given(
    houses
    | st.fixed_dictionaries(
        {f.name: _in_range(f) for f in schema.FEATURES},
        optional={schema.HOUSE_ID: st.from_regex(f"\\A{schema.HOUSE_ID_PATTERN}\\Z") | st.text(max_size=70)},
    )
)
def test_the_published_house_schema_accepts_exactly_what_the_router_accepts(house: dict[str, Any]) -> None:
    # Whole-number floats (2005.0) are the one deliberate difference: OpenAPI 3.0's "integer" refuses
    # them and the router takes them; a client that follows the document never sends them.
    has_whole_floats = any(
        isinstance(v, float) and math.isfinite(v) and v.is_integer() and f.integer
        for f in schema.FEATURES
        for k, v in house.items()
        if k == f.name
    )
    if has_whole_floats:
        return
    # Python's "$" (this validator's) also matches before a final newline; ECMA-262's, the document's
    # dialect, does not, and neither does the router: "A1\n" is not a house id for either of them.
    house_id = house.get(schema.HOUSE_ID)
    if isinstance(house_id, str) and house_id.endswith("\n"):
        assert not _router_accepts(house)
        return
    assert HOUSE_VALIDATOR.is_valid(house) == _router_accepts(house), house


def test_the_example_house_is_valid() -> None:
    HOUSE_VALIDATOR.validate(schema.EXAMPLE_HOUSE)
    assert _router_accepts(dict(schema.EXAMPLE_HOUSE))


@pytest.mark.parametrize("count", [0, 1001])
def test_batches_outside_the_limits_are_invalid(count: int) -> None:
    batch_schema = {**openapi.openapi_document()["components"]["schemas"]["Houses"], "components": {}}
    batch_schema["properties"] = {
        "houses": {**batch_schema["properties"]["houses"], "items": openapi.house_json_schema()}
    }
    assert not jsonschema.Draft4Validator(batch_schema).is_valid({"houses": [schema.EXAMPLE_HOUSE] * count})


def test_each_operation_is_named_as_the_route_table_names_it() -> None:
    # Given the one route table, when the document is built, then each route's operation carries its id
    for route in http_api.ROUTES:
        assert DOCUMENT["paths"][route.path][route.method.lower()]["operationId"] == route.operation_id


def test_the_router_registers_every_route_of_the_table_and_nothing_else() -> None:
    # Given the resolver the router's handler built from the table, then it serves exactly the table's routes
    assert sorted(handler.app._route_keys) == sorted(f"{r.method}{r.resolver_path}" for r in http_api.ROUTES)
