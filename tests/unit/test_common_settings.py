"""house_prices.settings.EnvReader: the one reader of the environment for router, model-sync and ops."""

from __future__ import annotations

import pytest

from house_prices.naming import KeyLayout
from house_prices.settings import EnvReader, SettingsError


def test_values_are_stripped_and_blank_means_unset() -> None:
    env = EnvReader({"A": "  x ", "B": "   ", "N": " 7 "})
    assert (env.required("A"), env.optional("B"), env.optional("B", "dflt"), env.integer("N", 1)) == (
        "x",
        None,
        "dflt",
        7,
    )
    assert env.integer("MISSING", 3) == 3
    env.check("demo")  # nothing to report


def test_problems_are_collected_then_raised_together() -> None:
    # Given every kind of mistake at once
    env = EnvReader({"COUNT": "many", "LOW": "0", "PREFIX": "a/../b"})
    env.required("NAME")
    assert env.integer("COUNT", 5) == 5  # the default stands in so reading goes on
    env.integer("LOW", 5, minimum=1)
    assert env.parsed("PREFIX", KeyLayout, "P") == KeyLayout("P")
    # When checked / Then one error names each variable with its problem
    with pytest.raises(SettingsError) as caught:
        env.check("demo")
    assert [(p.field, p.problem) for p in caught.value.problems] == [
        ("NAME", "is required"),
        ("COUNT", "must be an integer, got 'many'"),
        ("LOW", "must be >= 1, got 0"),
        ("PREFIX", "Invalid key prefix: 'a/../b'"),
    ]
    assert str(caught.value) == (
        "Invalid demo settings: NAME is required; COUNT must be an integer, got 'many'; "
        "LOW must be >= 1, got 0; PREFIX Invalid key prefix: 'a/../b'"
    )


def test_a_default_that_does_not_parse_is_a_bug_not_a_setting() -> None:
    with pytest.raises(ValueError, match="Invalid key prefix"):
        EnvReader({}).parsed("PREFIX", KeyLayout, "../nope")


def test_without_a_mapping_the_process_environment_is_read(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOUSE_PRICES_TEST_SETTING", "from-process")
    assert EnvReader().required("HOUSE_PRICES_TEST_SETTING") == "from-process"
