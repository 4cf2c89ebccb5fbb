"""The scikit-learn image table: region lookup, versions and a clear error for unknown regions."""

from __future__ import annotations

import re

import pytest

from training import images


@pytest.mark.parametrize(
    ("region", "version", "uri"),
    [
        ("us-east-1", "1.2-1", "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"),
        ("us-west-2", "1.4-2", "246618743249.dkr.ecr.us-west-2.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"),
        ("eu-west-1", "1.2-1", "141502667606.dkr.ecr.eu-west-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"),
        (
            "cn-north-1",
            "1.4-2",
            "450853457545.dkr.ecr.cn-north-1.amazonaws.com.cn/sagemaker-scikit-learn:1.4-2-cpu-py3",
        ),
    ],
)
def test_image_uri_per_region(region: str, version: str, uri: str) -> None:
    assert images.sklearn_image_uri(region, version) == uri


def test_default_version_is_in_the_table() -> None:
    table = images.load_table()
    assert table.default_version in table.versions
    assert images.sklearn_image_uri("us-east-1").endswith(f":{table.default_version}-cpu-py3")


def test_unknown_region_is_a_clear_error() -> None:
    with pytest.raises(images.UnknownRegion, match="no SageMaker scikit-learn image is known for region 'mars-1'"):
        images.sklearn_image_uri("mars-1")


def test_unknown_version_is_a_clear_error() -> None:
    with pytest.raises(images.UnknownImageVersion, match=re.escape("'0.9-9' is not one of 1.2-1, 1.4-2")):
        images.sklearn_image_uri("us-east-1", "0.9-9")
