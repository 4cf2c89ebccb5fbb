"""House feature rules (house_prices.schema) and the layer's dependency boundary."""

from __future__ import annotations

import ast
import json
import math
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from house_prices.errors import InvalidInput, PayloadTooLarge
from house_prices.schema import (
    CSV_COLUMNS,
    FEATURE_NAMES,
    FEATURES,
    MAX_ENDPOINT_BODY_BYTES,
    describe_features,
    house_from_row,
    parse_batch,
    parse_house,
    parse_houses,
    rows_to_csv,
)

VALID = {
    "YEAR_BUILT": 1995,
    "SQUARE_FEET": 3000,
    "NUM_BEDROOMS": 4,
    "NUM_BATHROOMS": 2.5,
    "LOT_ACRES": 1.1,
    "GARAGE_SPACES": 2,
}


def fields(error: InvalidInput | PayloadTooLarge) -> set[str]:
    return {problem.field for problem in error.problems}


def test_feature_order_is_the_seed_csv_order() -> None:
    assert FEATURE_NAMES == ("YEAR_BUILT", "SQUARE_FEET", "NUM_BEDROOMS", "NUM_BATHROOMS", "LOT_ACRES", "GARAGE_SPACES")
    assert CSV_COLUMNS == ("PRICE", *FEATURE_NAMES)


def test_a_valid_house_comes_back_in_feature_order() -> None:
    # Given a house whose keys are in a different order
    shuffled = dict(reversed(list(VALID.items())))
    # When parsed / Then values follow FEATURE_NAMES, integers stay integers
    row = parse_house(shuffled)
    assert row == (1995, 3000, 4, 2.5, 1.1, 2)
    assert isinstance(row[0], int)
    assert house_from_row(row) == VALID


def test_a_row_of_floats_becomes_a_house_with_integer_features_as_ints() -> None:
    # Given a row as numpy's tolist() gives it (every value a float)
    row = [1995.0, 3000.0, 4.0, 2.5, 1.1, 2.0]
    # When turned into a house / Then integer features are ints, the others floats, in JSON as a client sends them
    house = house_from_row(row)
    assert house == VALID
    assert [type(house[f.name]) for f in FEATURES] == [int if f.integer else float for f in FEATURES]
    assert json.dumps(house) == json.dumps(VALID)
    # And a row of the wrong length is refused rather than silently truncated
    with pytest.raises(ValueError, match="expected 6 values, got 5"):
        house_from_row(row[:-1])


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("SQUARE_FEET", "3000", "must be a number"),
        ("SQUARE_FEET", None, "must be a number"),
        ("SQUARE_FEET", True, "must be a number"),
        ("SQUARE_FEET", math.nan, "finite"),
        ("LOT_ACRES", math.inf, "finite"),
        ("SQUARE_FEET", 3000.5, "whole number"),
        ("NUM_BEDROOMS", 2.2, "whole number"),
        ("NUM_BATHROOMS", 2.3, "multiple of 0.5"),
        ("YEAR_BUILT", 1500, "between"),
        ("GARAGE_SPACES", -1, "between"),
        ("LOT_ACRES", 1e9, "between"),
        ("NUM_BATHROOMS", 1e308, "between"),
        ("SQUARE_FEET", 10**400, "between"),
        ("LOT_ACRES", -(10**400), "between"),
    ],
)
def test_each_bad_value_is_named(field: str, value: object, problem: str) -> None:
    # Given one bad feature / When parsed / Then the error names that field and says why
    with pytest.raises(InvalidInput) as raised:
        parse_house({**VALID, field: value})
    assert [(p.field, problem in p.problem) for p in raised.value.problems] == [(field, True)]


def test_missing_and_unknown_fields_are_all_reported_at_once() -> None:
    house = {k: v for k, v in VALID.items() if k != "LOT_ACRES"} | {"POOL": 1}
    with pytest.raises(InvalidInput) as raised:
        parse_house(house)
    assert fields(raised.value) == {"LOT_ACRES", "POOL"}


def test_batches_name_the_house_index() -> None:
    payload = {"houses": [VALID, {**VALID, "NUM_BEDROOMS": "four"}, {**VALID, "GARAGE_SPACES": 99}]}
    with pytest.raises(InvalidInput) as raised:
        parse_houses(payload)
    assert fields(raised.value) == {"houses[1].NUM_BEDROOMS", "houses[2].GARAGE_SPACES"}


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ([VALID], "body"),
        ("house", "body"),
        ({"houses": VALID}, "houses"),
        ({"houses": []}, "houses"),
        ({"houses": [VALID], "extra": 1}, "extra"),
        ({"houses": [1]}, "houses[0]"),
    ],
)
def test_malformed_payloads_name_the_offending_part(payload: object, field: str) -> None:
    with pytest.raises(InvalidInput) as raised:
        parse_houses(payload)
    assert field in fields(raised.value)


def test_too_many_houses_is_too_large_not_invalid() -> None:
    with pytest.raises(PayloadTooLarge) as raised:
        parse_houses({"houses": [VALID] * 3}, max_houses=2)
    assert fields(raised.value) == {"houses"}


def test_single_house_and_batch_of_one_are_equivalent() -> None:
    assert parse_houses(VALID) == parse_houses({"houses": [VALID]})


def test_csv_body_is_headerless_in_feature_order() -> None:
    assert rows_to_csv([parse_house(VALID)] * 2) == "1995,3000,4,2.5,1.1,2\n" * 2


def test_the_largest_allowed_batch_fits_the_endpoint_body_limit() -> None:
    # Given the most verbose valid house repeated up to the default batch limit
    widest = {f.name: (f.maximum if f.integer else -0.0 + f.maximum - (f.step or 0.123456)) for f in FEATURES}
    rows = parse_houses({"houses": [widest] * 1000})
    # Then the CSV body stays under the InvokeEndpoint limit
    assert len(rows_to_csv(rows).encode()) < MAX_ENDPOINT_BODY_BYTES


def test_feature_description_covers_every_feature() -> None:
    assert [d["name"] for d in describe_features()] == list(FEATURE_NAMES)


@given(st.dictionaries(st.text(max_size=12), st.one_of(st.none(), st.integers(), st.floats(), st.text(max_size=5))))
def test_arbitrary_objects_are_rejected_with_field_names_never_crashing(candidate: dict[str, object]) -> None:
    # Given any JSON-like mapping / When parsed / Then it either is a valid house or names fields
    try:
        row = parse_house(candidate)
    except InvalidInput as invalid:
        assert invalid.problems
        assert all(p.field and p.problem for p in invalid.problems)
    else:
        assert len(row) == len(FEATURE_NAMES)


def test_common_layer_never_imports_numpy_sklearn_or_pandas() -> None:
    # Given every module of the layer / Then none imports the heavy ML stack (the Lambda package must stay small)
    forbidden = {"numpy", "sklearn", "pandas", "scipy", "joblib"}
    layer = Path(__file__).resolve().parents[2] / "layers" / "common"
    offenders = []
    for path in layer.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            names = (
                [alias.name for alias in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in forbidden]
    assert list(layer.rglob("*.py")), "layer sources not found"
    assert offenders == []


def test_a_house_id_is_accepted_kept_apart_from_the_features_and_optional() -> None:
    # Given a batch where one house carries the caller's id
    batch = parse_batch({"houses": [VALID, {**VALID, "house_id": "MLS #2026-0042"}]})
    # Then the rows are features only (the CSV never sees the id) and the ids line up with the houses
    assert batch.rows == [parse_house(VALID)] * 2
    assert batch.house_ids == [None, "MLS #2026-0042"]
    assert rows_to_csv(batch.rows) == "1995,3000,4,2.5,1.1,2\n" * 2
    assert parse_batch({**VALID, "house_id": "a"}).house_ids == ["a"]


@pytest.mark.parametrize(
    ("house_id", "problem"),
    [
        ("", "1 to 64"),
        ("x" * 65, "1 to 64"),
        (42, "must be a string"),
        (None, "must be a string"),
        ("tab\there", "printable US-ASCII"),
        ("new\nline", "printable US-ASCII"),
        ("caf\u00e9", "printable US-ASCII"),
        (" padded", "leading or trailing"),
        ("padded ", "leading or trailing"),
        ("\x7f", "printable US-ASCII"),
    ],
)
def test_bad_house_ids_are_named(house_id: object, problem: str) -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_batch({"houses": [VALID, {**VALID, "house_id": house_id}]})
    assert [(p.field, problem in p.problem) for p in caught.value.problems] == [("houses[1].house_id", True)]


def test_other_unknown_fields_are_still_rejected_next_to_a_house_id() -> None:
    with pytest.raises(InvalidInput) as caught:
        parse_house({**VALID, "house_id": "ok", "HOUSE_ID": "no"})
    assert fields(caught.value) == {"HOUSE_ID"}
