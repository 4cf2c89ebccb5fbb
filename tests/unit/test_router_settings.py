"""RouterSettings.from_env: defaults, parsing and one clear error naming every bad variable."""

from __future__ import annotations

import dataclasses

import pytest

from house_prices.settings import SettingsError
from router.settings import RouterSettings

REQUIRED = {"ENDPOINT_NAME": "house-prices-mme", "REGISTRY_TABLE": "house-prices-registry"}


def test_defaults_match_the_documented_contract() -> None:
    # Given only the required variables
    # When settings are read
    settings = RouterSettings.from_env(REQUIRED)
    # Then the defaults of docs/architecture.md apply
    assert settings == RouterSettings(
        endpoint_name="house-prices-mme",
        registry_table="house-prices-registry",
        live_model_cache_seconds=4,
        max_houses_per_request=1000,
        endpoint_connect_timeout_seconds=1,
        endpoint_read_timeout_seconds=8,
        endpoint_max_attempts=2,
    )


def test_every_variable_is_parsed() -> None:
    environ = {
        **REQUIRED,
        "LIVE_MODEL_CACHE_SECONDS": "0",
        "MAX_HOUSES_PER_REQUEST": "25",
        "ENDPOINT_CONNECT_TIMEOUT_SECONDS": "3",
        "ENDPOINT_READ_TIMEOUT_SECONDS": " 30 ",
        "ENDPOINT_MAX_ATTEMPTS": "5",
        "REGISTRY_CONNECT_TIMEOUT_SECONDS": "2",
        "REGISTRY_READ_TIMEOUT_SECONDS": "4",
        "REGISTRY_MAX_ATTEMPTS": "3",
    }
    settings = RouterSettings.from_env(environ)
    assert (
        settings.live_model_cache_seconds,
        settings.max_houses_per_request,
        settings.endpoint_connect_timeout_seconds,
        settings.endpoint_read_timeout_seconds,
        settings.endpoint_max_attempts,
        settings.registry_connect_timeout_seconds,
        settings.registry_read_timeout_seconds,
        settings.registry_max_attempts,
    ) == (0, 25, 3, 30, 5, 2, 4, 3)


def test_settings_are_frozen() -> None:
    settings = RouterSettings.from_env(REQUIRED)
    with pytest.raises(dataclasses.FrozenInstanceError):
        settings.endpoint_name = "other"  # type: ignore[misc]


def test_all_problems_are_reported_at_once() -> None:
    # Given a missing required variable, a blank one, a non-integer and a non-positive integer
    environ = {
        "REGISTRY_TABLE": "   ",
        "MAX_HOUSES_PER_REQUEST": "many",
        "ENDPOINT_MAX_ATTEMPTS": "0",
        "LIVE_MODEL_CACHE_SECONDS": "-1",
    }
    # When settings are read
    with pytest.raises(SettingsError) as caught:
        RouterSettings.from_env(environ)
    # Then each offending variable is named with its problem
    problems = {p.field: p.problem for p in caught.value.problems}
    assert problems == {
        "ENDPOINT_NAME": "is required",
        "REGISTRY_TABLE": "is required",
        "MAX_HOUSES_PER_REQUEST": "must be an integer, got 'many'",
        "ENDPOINT_MAX_ATTEMPTS": "must be >= 1, got 0",
        "LIVE_MODEL_CACHE_SECONDS": "must be >= 0, got -1",
    }
    assert "ENDPOINT_NAME is required" in str(caught.value)


@pytest.mark.parametrize(
    "name", ["MAX_HOUSES_PER_REQUEST", "ENDPOINT_CONNECT_TIMEOUT_SECONDS", "ENDPOINT_READ_TIMEOUT_SECONDS"]
)
def test_positive_integers_reject_zero(name: str) -> None:
    with pytest.raises(SettingsError, match=name):
        RouterSettings.from_env({**REQUIRED, name: "0"})


@pytest.mark.parametrize(("raw", "rate"), [("1", 1.0), ("0", 0.0), (" 0.05 ", 0.05), ("1.0", 1.0)])
def test_the_capture_sample_rate_is_a_share(raw: str, rate: float) -> None:
    assert RouterSettings.from_env({**REQUIRED, "CAPTURE_SAMPLE_RATE": raw}).capture_sample_rate == rate


def test_capture_records_everything_by_default() -> None:
    assert RouterSettings.from_env(REQUIRED).capture_sample_rate == 1.0


@pytest.mark.parametrize("raw", ["1.5", "-0.1", "nan", "inf", "all", "5%"])
def test_a_capture_sample_rate_outside_0_to_1_is_named(raw: str) -> None:
    with pytest.raises(SettingsError) as caught:
        RouterSettings.from_env({**REQUIRED, "CAPTURE_SAMPLE_RATE": raw})
    assert [p.field for p in caught.value.problems] == ["CAPTURE_SAMPLE_RATE"]
