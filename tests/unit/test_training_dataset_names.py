"""The segment-name rule: valid city names or a rejection, idempotent, pinned, and collisions refused."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from house_prices import naming
from tests.dataset_files import SCHEMA_HEADER, house_rows, write_csv, write_parquet
from training.dataset import DatasetError, DataSpec, city_name, load_dataset
from training.dataset.names import assign_city_names


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("Seattle", "Seattle"),
        ("Chicago_IL", "Chicago_IL"),
        ("New York", "New_York"),
        ("São Paulo", "Sao_Paulo"),
        ("Zürich / Oerlikon", "Zurich_Oerlikon"),
        ("98178", "S_98178"),
        ("-5", "S_5"),
        ("  --x--  ", "x"),
        ("_private", "private"),
        ("ﬁve", "five"),
        ("a" * 80, "a" * 64),
        ("1" + "b" * 80, "S_1" + "b" * 61),
        ("北京", None),
        ("", None),
        ("___", None),
        ("!?", None),
    ],
)
def test_the_rule_gives_these_names(value: str, name: str | None) -> None:
    # Given a segment value / When the rule names it / Then the name is pinned (the same in every run and release)
    assert city_name(value) == name


@given(st.text(max_size=100))
def test_every_name_is_a_valid_city_or_a_rejection(value: str) -> None:
    # Given any text / When it is named
    name = city_name(value)
    # Then it is a valid city name, or None (the segment is then skipped with the rule)
    assert name is None or naming.is_valid_city(name)


@given(st.text(max_size=100))
def test_the_rule_is_idempotent_and_deterministic(value: str) -> None:
    # Given a value's name / When the name is named again, and the value again / Then nothing changes
    name = city_name(value)
    assert city_name(value) == name
    if name is not None:
        assert city_name(name) == name


@given(st.from_regex(naming.CITY_PATTERN, fullmatch=True))
def test_a_valid_city_name_is_its_own_name(value: str) -> None:
    # Given any valid city name / When named / Then it is unchanged
    assert city_name(value) == value


def test_two_values_sharing_a_name_are_refused_naming_both() -> None:
    # Given "New York" and "New_York" (both become New_York) / When names are assigned / Then both are named
    with pytest.raises(DatasetError, match=r"'New York' and 'New_York' → 'New_York'"):
        assign_city_names(["New York", "New_York", "Boston"])


def test_a_file_with_colliding_segment_values_is_refused(tmp_path: Path) -> None:
    # Given a file with the segments "Portland OR" and "Portland_OR", which the rule names alike
    rows = house_rows("Portland OR", 40) + house_rows("Portland_OR", 40)
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    # When it is loaded / Then one error names both values and nothing is returned
    with pytest.raises(DatasetError, match=r"'Portland OR' and 'Portland_OR'"):
        load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))


def test_a_value_without_a_name_is_skipped_with_the_rule(tmp_path: Path) -> None:
    # Given a segment whose value has no ASCII letter or digit, next to a normal one
    rows = house_rows("北京", 40) + house_rows("Boston", 40)
    path = write_csv(tmp_path / "houses.csv", SCHEMA_HEADER, rows)
    # When it is loaded
    dataset = load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))
    # Then Boston trains and the other is reported skipped, with the rule as the reason
    assert [s.city for s in dataset.segments] == ["Boston"]
    skipped = [s for s in dataset.report.segments if s.status == "skipped"]
    assert [(s.source_value, s.city) for s in skipped] == [("北京", "")]
    assert "no valid city name" in (skipped[0].reason or "")
    assert "NFKD" in (skipped[0].reason or "")


@pytest.mark.parametrize("zipcodes", [[98178] * 40, [98178.0] * 40, ["98178.0"] * 40, [" 98178 "] * 40])
def test_numeric_segment_values_become_their_digits(tmp_path: Path, zipcodes: list[object]) -> None:
    # Given zip codes stored as integers, floats (pandas writes 98178.0) or padded text, in Parquet
    columns = {name: [row[i] for row in house_rows("x", 40)] for i, name in enumerate(SCHEMA_HEADER)}
    columns["segment"] = zipcodes
    path = write_parquet(tmp_path / "houses.parquet", columns)
    # When loaded
    dataset = load_dataset(DataSpec(str(path), segment_column="segment", price_column="PRICE"))
    # Then the segment is the text "98178", named S_98178
    [segment] = dataset.segments
    assert (segment.source_value, segment.city) == ("98178", "S_98178")
