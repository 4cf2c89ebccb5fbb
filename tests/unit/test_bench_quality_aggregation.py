"""bench/quality_aggregation.py: its pure parts (the plan's counts, the verdict, the cost estimate), at a tiny scale."""

from __future__ import annotations

from pathlib import Path

from bench import quality_aggregation as bench


def test_a_tiny_run_joins_every_joinable_label_and_reports_each_injected_one(tmp_path: Path) -> None:
    # Given 20 cities, 700 predictions and 200 labels written in the AWS layouts
    plan = bench.generate(tmp_path, bench.Scale(cities=20, predictions=700, labels=200))
    assert (plan["objects"], plan["predictions"], plan["duplicates"], plan["unknown"]) == (140, 700, 2, 2)
    # When the real path aggregates them in process
    real = bench.measure(tmp_path, "real")
    verdict = bench.evaluate(plan, real)
    # Then every joinable label is joined to its intended prediction once; duplicates and unknowns reported
    assert verdict["join_rate"] == 1.0
    assert verdict["never_double_counted"]
    assert verdict["right_prediction"]
    assert (verdict["duplicates_reported"], verdict["unknown_reported"]) == (2, 2)
    assert real["captures"]["captures_counted"] == 700
    # And the ceiling reads the same predictions and label rows
    ceiling = bench.measure(tmp_path, "ceiling")
    assert (ceiling["predictions"], ceiling["label_rows"]) == (700, plan["labels"])


def test_the_cost_estimate_prices_the_counted_calls() -> None:
    cost = bench.aws_cost({"label_transaction": 1_000_000, "house_query": 1_000_000, "s3_get": 1_000_000})
    assert cost["dynamodb_wru"] == 10_000_000
    assert cost["dynamodb_rru"] == 500_000
    assert cost["dynamodb_usd"] == round(10e6 * 0.625e-6 + 0.5e6 * 0.125e-6, 2)
    assert cost["s3_usd"] == 0.4
