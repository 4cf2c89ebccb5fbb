"""house_prices.live_quality: mergeable aggregates and the histogram median."""

from __future__ import annotations

import random
import statistics

import pytest
from hypothesis import given
from hypothesis import strategies as st

from house_prices.live_quality import (
    AE_EDGES,
    APE_EDGES,
    Aggregate,
    QualitySummary,
    bucket_of,
    histogram_quantile,
)

pairs = st.lists(
    st.tuples(st.floats(1e3, 5e6), st.floats(1e3, 5e6)),
    min_size=0,
    max_size=30,
)


def aggregate_of(values: list[tuple[float, float]]) -> Aggregate:
    total = Aggregate()
    for predicted, sale in values:
        total = total.merge(Aggregate.of(predicted, sale))
    return total


def test_one_label_counts_its_errors() -> None:
    # Given a prediction of 110k for a house that sold at 100k
    one = Aggregate.of(110_000, 100_000)
    # Then its error is +10k, 10 % of the price
    assert (one.count, one.mae, one.bias) == (1, 10_000, 10_000)
    assert one.median_ape == pytest.approx(0.10, rel=0.13)
    assert one.median_ae == pytest.approx(10_000, rel=0.13)


@given(pairs, pairs, pairs)
def test_merge_is_associative_and_commutative(
    a: list[tuple[float, float]], b: list[tuple[float, float]], c: list[tuple[float, float]]
) -> None:
    x, y, z = aggregate_of(a), aggregate_of(b), aggregate_of(c)
    left, right = x.merge(y).merge(z), z.merge(x.merge(y))
    assert (left.count, left.ape_buckets, left.ae_buckets) == (right.count, right.ape_buckets, right.ae_buckets)
    assert left.abs_error_sum == pytest.approx(right.abs_error_sum)
    assert left.signed_error_sum == pytest.approx(right.signed_error_sum, abs=1e-3)


@given(pairs)
def test_increments_read_back_as_the_same_aggregate(values: list[tuple[float, float]]) -> None:
    # Given an aggregate written as the attributes ADD would leave in the item
    total = aggregate_of(values)
    # Then reading them back loses nothing
    assert Aggregate.from_attributes(total.increments()) == total


def test_the_histogram_median_is_within_one_bucket_of_the_true_median() -> None:
    # Given 2,001 lognormal percentage errors
    rng = random.Random(17)
    values = [rng.lognormvariate(-2.5, 1.0) for _ in range(2001)]
    buckets = [0] * (len(APE_EDGES) + 1)
    for value in values:
        buckets[bucket_of(value, APE_EDGES)] += 1
    # Then the median read from the histogram is within one bucket's width (10^(1/20)) of the exact one
    estimate = histogram_quantile(buckets, APE_EDGES)
    assert estimate is not None
    assert estimate == pytest.approx(statistics.median(values), rel=10 ** (1 / 20) - 1)


def test_extreme_errors_land_in_the_end_buckets() -> None:
    assert bucket_of(0.0, APE_EDGES) == 0
    assert bucket_of(1e9, AE_EDGES) == len(AE_EDGES)
    assert histogram_quantile([0] * (len(APE_EDGES) + 1), APE_EDGES) is None
    perfect = Aggregate.of(100_000, 100_000)
    assert perfect.median_ape is not None
    assert perfect.median_ape < APE_EDGES[0]


def test_the_summary_compares_live_to_offline() -> None:
    # Given live errors of 20k against a gate that measured 10k offline
    live = aggregate_of([(120_000, 100_000), (80_000, 100_000), (120_000, 100_000)])
    summary = QualitySummary.of("Chicago_IL", "v1", live, offline_ae_p50=10_000)
    # Then live is about twice the offline figure, bias is +6,667
    assert summary.live_vs_offline == pytest.approx(2.0, rel=0.13)
    assert summary.as_dict()["bias"] == pytest.approx(6666.67)
    assert summary.as_dict()["count"] == 3
    assert QualitySummary.of("c", "v", live, None).live_vs_offline is None
    assert QualitySummary.of("c", "v", Aggregate(), 5.0).as_dict()["mae"] is None
