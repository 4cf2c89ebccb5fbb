"""Which S3 keys model-sync acts on: exactly training outputs of valid cities, decoded once."""

from __future__ import annotations

from urllib.parse import quote, quote_plus

import pytest

from house_prices.errors import NotAModelKey
from house_prices.naming import KeyLayout

LAYOUT = KeyLayout()
KEY = "DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job-1/output/model.tar.gz"


@pytest.mark.parametrize(
    "raw",
    [KEY, quote_plus(KEY), quote(KEY, safe="/"), KEY.replace("/", "%2f")],
    ids=["plain", "moto-%2F", "s3-style", "lowercase-escapes"],
)
def test_encoded_training_output_keys_parse_to_city_and_job(raw: str) -> None:
    # Given the key as S3 (or moto) puts it into an event, When parsed
    output = LAYOUT.parse_training_output_key(raw)
    # Then city, job and the decoded key come out
    assert (output.city, output.job, output.key) == ("Chicago_IL", "job-1", KEY)


@pytest.mark.parametrize(
    ("raw", "why"),
    [
        ("DEMO_MME_SCIKIT_V1/multi_model_artifacts/Chicago_IL.20260101T000000Z-0123abcd.tar.gz", "is not under"),
        ("OTHER_PREFIX/model_artifacts/Chicago_IL/job-1/output/model.tar.gz", "is not under"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/output/model.tar.gz", "is not {city}"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/a/b/output/model.tar.gz", "is not {city}"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job-1/output/model.tar.gz.tmp", "is not {city}"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago+IL/job-1/output/model.tar.gz", "invalid city name 'Chicago IL'"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/..%2F..%2Fetc/job-1/output/model.tar.gz", "is not {city}"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chi.cago/job-1/output/model.tar.gz", "invalid city name"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/%3Cscript%3E/job-1/output/model.tar.gz", "invalid city name"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/1Chicago/job-1/output/model.tar.gz", "invalid city name"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/" + "A" * 65 + "/job-1/output/model.tar.gz", "invalid city name"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job_1/output/model.tar.gz", "invalid job name"),
        ("DEMO_MME_SCIKIT_V1/model_artifacts/Chicago_IL/job-1/output/model.tar.gz%00", "is not {city}"),
    ],
    ids=[
        "mme-prefix-no-self-trigger",
        "wrong-prefix",
        "too-shallow",
        "too-deep",
        "wrong-file",
        "plus-is-space",
        "traversal",
        "dot-in-city",
        "markup-city",
        "digit-first",
        "too-long",
        "underscore-job",
        "nul",
    ],
)
def test_everything_else_is_not_a_model_key(raw: str, why: str) -> None:
    with pytest.raises(NotAModelKey) as caught:
        LAYOUT.parse_training_output_key(raw)
    assert why in caught.value.message


def test_keys_are_decoded_exactly_once() -> None:
    # "%2541" decodes once to "%41" (an invalid city); decoding twice would wrongly give "A"
    with pytest.raises(NotAModelKey, match="invalid city name"):
        LAYOUT.parse_training_output_key("DEMO_MME_SCIKIT_V1/model_artifacts/%2541/job-1/output/model.tar.gz")


def test_trigger_and_write_prefixes_are_disjoint() -> None:
    assert not LAYOUT.mme_prefix.startswith(LAYOUT.training_output_prefix)
    assert not LAYOUT.training_output_prefix.startswith(LAYOUT.mme_prefix)
