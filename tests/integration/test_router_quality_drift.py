"""The router's quality reader on moto: a version's live quality and its saved drift report, in one Query."""

from __future__ import annotations

from typing import Any

import pytest

from router.adapters.quality import DynamoQualityReader
from tests import quality_doubles as quality_kit

TABLE = quality_kit.QUALITY_TABLE


@pytest.fixture
def dynamodb(quality_table: Any) -> Any:
    return quality_table


def test_each_version_shows_its_drift_report_or_none(dynamodb: Any) -> None:
    # Given v2 with captured predictions and a drifting report but no labels, and v1 with a label only
    dynamodb.put_item(
        TableName=TABLE,
        Item={
            "city": {"S": "Chicago_IL"},
            "version": {"S": "v2"},
            "drift_n": {"N": "450"},
            "drift": {
                "M": {
                    "count": {"N": "450"},
                    "drifting": {"BOOL": True},
                    "features": {
                        "M": {
                            "SQUARE_FEET": {"M": {"psi": {"N": "0.31"}, "js": {"N": "0.2"}, "drifting": {"BOOL": True}}}
                        }
                    },
                }
            },
        },
    )
    dynamodb.put_item(
        TableName=TABLE,
        Item={"city": {"S": "Chicago_IL"}, "version": {"S": "v1"}, "n": {"N": "1"}, "abs_sum": {"N": "5"}},
    )
    # When the location's quality is read
    views = [v.as_dict() for v in DynamoQualityReader(dynamodb, TABLE).summaries("Chicago_IL")]
    # Then the newest version comes first with its drift per feature and flag; the other has none yet
    assert [(v["version"], v["count"]) for v in views] == [("v2", 0), ("v1", 1)]
    assert views[0]["drift"] == {
        "count": 450,
        "drifting": True,
        "features": {"SQUARE_FEET": {"psi": 0.31, "js": 0.2, "drifting": True}},
    }
    assert views[1]["drift"] is None
    assert views[1]["mae"] == 5
