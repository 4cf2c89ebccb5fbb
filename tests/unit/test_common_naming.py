"""Rules for city names, key layout and versions (house_prices.naming)."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta, timezone

import pytest

from house_prices.errors import InvalidCityName, InvalidVersion, NotAModelKey
from house_prices.naming import (
    DEFAULT_PREFIX,
    KeyLayout,
    job_name,
    make_version,
    target_model,
    validate_city,
    validate_version,
)
from house_prices.schema import NOTEBOOK_CITIES

LAYOUT = KeyLayout()
SHA = "1a2b3c4d" + "0" * 56


# Inverses that only these tests need (the Lambda packages never parse a TargetModel or a version back).
def parse_target_model(name: str) -> tuple[str, str]:
    if not name.endswith(".tar.gz"):
        raise ValueError(f"{name!r} is not a versioned artifact name")
    city, _, version = name[: -len(".tar.gz")].partition(".")
    return validate_city(city), validate_version(version)


def version_created_at(version: str) -> datetime:
    stamp = validate_version(version).split("-")[0]
    return datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)


@pytest.mark.parametrize("city", [*NOTEBOOK_CITIES, "a", "A" + "b" * 63, "St-Louis_MO", "x1"])
def test_valid_city_names_are_accepted(city: str) -> None:
    # Given a well-formed city name / When validated / Then it comes back unchanged
    assert validate_city(city) == city


@pytest.mark.parametrize(
    "hostile",
    [
        "../x",
        "a/b",
        "",
        "A" * 65,
        "Zürich",
        "San.Francisco",
        ".",
        "..",
        "1city",
        "_x",
        "-x",
        "a b",
        "a\x00b",
        "Chicago_IL.tar.gz",
        "a\\b",
        None,
        42,
        "İstanbul",
    ],
)
def test_hostile_city_names_are_rejected(hostile: object) -> None:
    # Given a name that could escape a key prefix or confuse TargetModel parsing
    # When validated / Then it is rejected before any key is built, naming the field
    with pytest.raises(InvalidCityName) as raised:
        validate_city(hostile)
    assert raised.value.problems[0].field == "city"


def test_key_layout_matches_the_seed_and_sagemaker_layouts() -> None:
    # Given the default prefix / When keys are built / Then they follow DESIGN §3 exactly
    assert LAYOUT.prefix == DEFAULT_PREFIX == "DEMO_MME_SCIKIT_V1"
    assert (
        LAYOUT.prep_key("Chicago_IL", "train") == "DEMO_MME_SCIKIT_V1/model_prep/Chicago_IL/train/Chicago_IL_train.csv"
    )
    assert (
        LAYOUT.training_output_key("Chicago_IL", "job-1")
        == "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job-1/output/model.tar.gz"
    )
    version = "20261125T040000Z-1a2b3c4d"
    assert (
        LAYOUT.mme_key("Chicago_IL", version) == f"DEMO_MME_SCIKIT_V1/multi_model_artifacts/Chicago_IL.{version}.tar.gz"
    )
    assert LAYOUT.model_data_url("bkt") == "s3://bkt/DEMO_MME_SCIKIT_V1/multi_model_artifacts/"


def test_trigger_and_write_prefixes_are_disjoint() -> None:
    # Given the layout / Then neither prefix contains the other, so model-sync never triggers itself
    assert not LAYOUT.mme_prefix.startswith(LAYOUT.training_output_prefix)
    assert not LAYOUT.training_output_prefix.startswith(LAYOUT.mme_prefix)
    with pytest.raises(NotAModelKey):
        LAYOUT.parse_training_output_key(LAYOUT.mme_key("Chicago_IL", "20261125T040000Z-1a2b3c4d"))


def test_code_archives_are_content_addressed_outside_the_trigger_prefix() -> None:
    key = LAYOUT.sourcedir_key("ABCDEF0123456789" * 4)
    assert key == "DEMO_MME_SCIKIT_V1/code/sourcedir-abcdef012345.tar.gz"
    assert not key.startswith(LAYOUT.training_output_prefix)
    with pytest.raises(ValueError, match="hex"):
        LAYOUT.sourcedir_key("../../x")


def test_prep_key_rejects_unknown_split() -> None:
    with pytest.raises(ValueError, match="split"):
        LAYOUT.prep_key("Chicago_IL", "holdout")
    with pytest.raises(ValueError, match="split"):
        LAYOUT.prep_split_prefix("Chicago_IL", "holdout")


def test_sagemaker_prefixes_contain_exactly_the_keys_built_for_them() -> None:
    # Given the prefixes a CreateTrainingJob request names (channel S3Prefix and S3OutputPath)
    channel = LAYOUT.prep_split_prefix("Chicago_IL", "val")
    output_path = LAYOUT.training_output_city_prefix("Chicago_IL")
    # Then they are the notebook's folders, and the keys we upload or expect lie directly inside them
    assert channel == "DEMO_MME_SCIKIT_V1/model_prep/Chicago_IL/val/"
    assert output_path == "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/"
    assert LAYOUT.prep_key("Chicago_IL", "val") == f"{channel}Chicago_IL_val.csv"
    assert LAYOUT.training_output_key("Chicago_IL", "job-1") == f"{output_path}job-1/output/model.tar.gz"
    # And another city's prefix does not contain them (no "Chicago_IL" vs "Chicago_IL2" overlap)
    assert not LAYOUT.prep_key("Chicago_IL2", "val").startswith(channel)
    assert not LAYOUT.training_output_key("Chicago_IL2", "job-1").startswith(output_path)


@pytest.mark.parametrize("city", ["../x", "a/b", ""])
def test_sagemaker_prefixes_reject_hostile_cities(city: str) -> None:
    with pytest.raises(InvalidCityName):
        LAYOUT.prep_split_prefix(city, "train")
    with pytest.raises(InvalidCityName):
        LAYOUT.training_output_city_prefix(city)


def test_training_output_keys_round_trip_including_url_encoding() -> None:
    # Given a key as S3 events deliver it (URL-encoded, '/' as %2F as moto does)
    key = LAYOUT.training_output_key("San-Diego_CA", "job-20261125-1")
    encoded = key.replace("/", "%2F")
    # When parsed / Then city and job come back
    for raw in (key, encoded):
        parsed = LAYOUT.parse_training_output_key(raw)
        assert (parsed.city, parsed.job, parsed.key) == ("San-Diego_CA", "job-20261125-1", key)


@pytest.mark.parametrize(
    "key",
    [
        "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job/output/other.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/output/model.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job/extra/output/model.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_artifacts/../job/output/model.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_artifacts/a.b/job/output/model.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job_x/output/model.tar.gz",
        "OTHER/model_artifacts/Chicago_IL/job/output/model.tar.gz",
        "DEMO_MME_SCIKIT_V1/model_prep/Chicago_IL/train/Chicago_IL_train.csv",
        "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago+IL/job/output/model.tar.gz",
    ],
)
def test_anything_but_a_training_output_is_not_a_model_key(key: str) -> None:
    with pytest.raises(NotAModelKey):
        LAYOUT.parse_training_output_key(key)


def test_versions_sort_by_time_and_are_derived_deterministically() -> None:
    # Given two creation times a second apart
    earlier = datetime(2026, 11, 25, 4, 0, 0, tzinfo=UTC)
    later = earlier + timedelta(seconds=1)
    # When versions are made from them / Then the same inputs give the same version, and order follows time
    assert make_version(earlier, SHA) == make_version(earlier, SHA) == "20261125T040000Z-1a2b3c4d"
    assert make_version(earlier, "f" * 64) < make_version(later, "0" * 64)
    # And a non-UTC timestamp is normalised
    assert make_version(earlier.astimezone(timezone(timedelta(hours=5))), SHA) == make_version(earlier, SHA)
    assert version_created_at(make_version(earlier, SHA)) == earlier


def test_make_version_rejects_naive_times_and_bad_digests() -> None:
    with pytest.raises(ValueError, match="timezone"):
        make_version(datetime(2026, 1, 1), SHA)
    with pytest.raises(ValueError, match="hex"):
        make_version(datetime(2026, 1, 1, tzinfo=UTC), "not-hex!")


@pytest.mark.parametrize("bad", ["", "latest", "20261125T040000Z", "20261125T040000Z-1A2B3C4D", "../x", "2026-11-25"])
def test_invalid_versions_are_rejected(bad: str) -> None:
    with pytest.raises(InvalidVersion):
        validate_version(bad)


def test_target_model_round_trips() -> None:
    version = "20261125T040000Z-1a2b3c4d"
    name = target_model("Chicago_IL", version)
    assert name == "Chicago_IL.20261125T040000Z-1a2b3c4d.tar.gz"
    assert parse_target_model(name) == ("Chicago_IL", version)
    with pytest.raises(ValueError, match="versioned"):
        parse_target_model("Chicago_IL.zip")


def test_job_names_are_valid_sagemaker_names_and_unique_per_millisecond() -> None:
    now = datetime(2026, 11, 25, 4, 0, 0, 123000, tzinfo=UTC)
    assert job_name("Chicago_IL", now) == "Chicago-IL-20261125-040000-123"
    assert job_name("Chicago_IL", now) != job_name("Chicago_IL", now + timedelta(milliseconds=1))
    assert len(job_name("A" * 64, now)) <= 63


def test_prefix_must_be_a_plain_key_prefix() -> None:
    for bad in ("", "/abs", "a//b", "a/../b", "a/", "a b"):
        with pytest.raises(ValueError, match="prefix"):
            KeyLayout(bad)
    assert KeyLayout("team/models").mme_prefix == "team/models/multi_model_artifacts/"


def test_captures_are_partitioned_by_city_and_utc_date_outside_every_other_prefix() -> None:
    # Given the default layout
    layout = KeyLayout()
    # Then a capture partition is Hive-style city= / date= under captures/, and errors have their own prefix
    assert (
        layout.capture_prefix("Chicago_IL", "2026-12-07")
        == "DEMO_MME_SCIKIT_V1/captures/city=Chicago_IL/date=2026-12-07/"
    )
    assert layout.capture_prefix("Chicago_IL", date(2026, 1, 2)).endswith("/date=2026-01-02/")
    assert layout.capture_errors_prefix == "DEMO_MME_SCIKIT_V1/capture_errors/"
    for other in (layout.training_output_prefix, layout.mme_prefix, layout.training_jobs_prefix):
        assert not layout.captures_prefix.startswith(other)
        assert not other.startswith(layout.captures_prefix)


@pytest.mark.parametrize(
    ("city", "day"),
    [("../x", "2026-12-07"), ("Chicago_IL", "2026-02-30"), ("Chicago_IL", "20261207"), ("Chicago_IL", "2026-12-07/..")],
)
def test_capture_prefixes_refuse_what_is_not_a_city_and_a_day(city: str, day: str) -> None:
    with pytest.raises((ValueError, InvalidCityName)):
        KeyLayout().capture_prefix(city, day)
