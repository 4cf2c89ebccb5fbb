"""`python -m ops quality` in process against moto: the quality table's items, worst live-vs-offline first."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import pytest
from boto3.dynamodb.types import TypeSerializer

from house_prices.live_quality import Aggregate, QualitySummary
from ops import cli
from ops import quality as live_quality
from tests import quality_doubles as quality_kit

TABLE = quality_kit.QUALITY_TABLE


def put(dynamodb: Any, city: str, version: str, errors: list[tuple[float, float]], offline: float | None) -> None:
    total = Aggregate()
    for predicted, sale in errors:
        total = total.merge(Aggregate.of(predicted, sale))
    item = {"city": {"S": city}, "version": {"S": version}}
    item.update({name: {"N": repr(float(value))} for name, value in total.increments().items()})
    if offline is not None:
        item["offline_ae_p50"] = {"N": repr(offline)}
    dynamodb.put_item(TableName=TABLE, Item=item)


@pytest.fixture
def dynamodb(quality_table: Any) -> Any:
    put(quality_table, "Chicago_IL", "v1", [(110_000, 100_000)] * 3, 10_000.0)  # live = offline
    put(quality_table, "Austin_TX", "v2", [(150_000, 100_000)] * 3, 10_000.0)  # live 5 x offline
    put(quality_table, "Boston_MA", "v3", [(101_000, 100_000)], None)  # no offline figure
    return quality_table


def test_the_worst_city_comes_first_as_json(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # When the command runs with --json
    code = cli.main(["quality", "--quality-table", TABLE, "--json", "--table", "unused", "--bucket", "b"])
    # Then the cities come worst live-vs-offline first, unknown ratios last
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert [r["city"] for r in rows] == ["Austin_TX", "Chicago_IL", "Boston_MA"]
    assert rows[0]["live_vs_offline"] == pytest.approx(5.0, rel=0.13)
    assert rows[0]["count"] == 3


def test_a_table_and_the_filters(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    code = cli.main(["quality", "--quality-table", TABLE, "--top", "1", "--min-count", "2", "--table", "t"])
    out = capsys.readouterr().out
    assert code == 0
    assert "Austin_TX" in out
    assert "Chicago_IL" not in out


def test_the_table_name_falls_back_to_the_registrys_sibling() -> None:
    args = cli.build_parser().parse_args(["quality"])
    config = live_quality.OpsConfig(bucket=None, layout=None, registry_table="s-RegistryTable")  # type: ignore[arg-type]
    assert live_quality.table_name(args, config, {}, None) == "s-QualityTable"
    with pytest.raises(live_quality.ConfigError):
        live_quality.table_name(args, live_quality.OpsConfig(None, None, None), {}, None)  # type: ignore[arg-type]


def test_worst_first_ranks_by_ratio_then_ape() -> None:
    a = QualitySummary.of("A", "v", Aggregate.of(120, 100), 10.0)
    b = QualitySummary.of("B", "v", Aggregate.of(200, 100), None)
    assert [s.city for s in live_quality.worst_first([b, a])] == ["A", "B"]


def put_drift(dynamodb: Any, city: str, version: str, psi: dict[str, float], drifting: bool, count: int) -> None:
    """A drift report as the quality function saves it (one feature drifts when its PSI > 0.2 here)."""
    report = {
        "count": count,
        "drifting": drifting,
        "features": {name: {"psi": value, "js": value / 2, "drifting": value > 0.2} for name, value in psi.items()},
    }
    dynamodb.update_item(
        TableName=TABLE,
        Key={"city": {"S": city}, "version": {"S": version}},
        UpdateExpression="SET #r = :r",
        ExpressionAttributeNames={"#r": "drift"},
        ExpressionAttributeValues={
            ":r": TypeSerializer().serialize(json.loads(json.dumps(report), parse_float=Decimal))
        },
    )


def test_drift_lists_only_drifting_cities_largest_psi_first(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Given Chicago drifting on one feature, Denver (no labels yet) on two, Austin's report not drifting
    put_drift(dynamodb, "Chicago_IL", "v1", {"SQUARE_FEET": 0.3, "LOT_ACRES": 0.01}, True, 500)
    put_drift(dynamodb, "Denver_CO", "v9", {"SQUARE_FEET": 0.25, "YEAR_BUILT": 0.9}, True, 800)
    put_drift(dynamodb, "Austin_TX", "v2", {"SQUARE_FEET": 0.05}, False, 900)
    # When `ops quality --drift --json` runs
    code = cli.main(["quality", "--quality-table", TABLE, "--drift", "--json", "--table", "t", "--bucket", "b"])
    rows = json.loads(capsys.readouterr().out)
    # Then the drifting ones are listed, largest PSI first, with their drifting features
    assert code == 0
    assert [(r["city"], r["version"], r["predictions"]) for r in rows] == [
        ("Denver_CO", "v9", 800),
        ("Chicago_IL", "v1", 500),
    ]
    assert rows[0]["features"] == "SQUARE_FEET, YEAR_BUILT"
    assert rows[0]["max_psi"] == pytest.approx(0.9)
    assert rows[1]["drift"]["LOT_ACRES"] == {"psi": 0.01, "js": 0.005, "drifting": False}
    # And the table form names them too
    assert cli.main(["quality", "--quality-table", TABLE, "--drift", "--table", "t", "--bucket", "b"]) == 0
    out = capsys.readouterr().out
    assert "Denver_CO" in out
    assert "Austin_TX" not in out
    # And the quality list still leaves out the version without labels
    assert cli.main(["quality", "--quality-table", TABLE, "--json", "--table", "t", "--bucket", "b"]) == 0
    assert "Denver_CO" not in capsys.readouterr().out


def test_rollout_evidence_items_are_not_listed_as_versions(dynamodb: Any, capsys: pytest.CaptureFixture[str]) -> None:
    # Given a rollout's evidence item beside the versions' items (house_prices.rollout_evidence)
    dynamodb.put_item(
        TableName=TABLE,
        Item={"city": {"S": "Chicago_IL"}, "version": {"S": "rollout#20261201T040000Z-5e6f7a8b"}, "pair_n": {"N": "7"}},
    )
    # When the command lists every version, even those without labels
    code = cli.main(
        ["quality", "--quality-table", TABLE, "--min-count", "0", "--json", "--table", "t", "--bucket", "b"]
    )
    # Then the evidence item is not one of them
    rows = json.loads(capsys.readouterr().out)
    assert code == 0
    assert sorted(r["version"] for r in rows) == ["v1", "v2", "v3"]
